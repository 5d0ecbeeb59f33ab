package web

import (
	"bytes"
	"embed"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The web client: a page, its script, and ansi_up (vendored, with its
// licence) for the colours. No build step.
//
//go:embed static
var static embed.FS

var files = func() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return http.FileServerFS(sub)
}()

// linkMeta is where the page learns the origins whose links it makes live.
const linkMeta = `<meta name="holdfast-link-origins" content="">`

// indexPage renders the page with the origins whose links are live.
func indexPage(origins []string) []byte {
	page, err := static.ReadFile("static/index.html")
	if err != nil || !bytes.Contains(page, []byte(linkMeta)) {
		panic("web: the page has no " + linkMeta)
	}
	meta := `<meta name="holdfast-link-origins" content="` + html.EscapeString(strings.Join(origins, " ")) + `">`
	return bytes.Replace(page, []byte(linkMeta), []byte(meta), 1)
}

var pageTime = time.Now()

func (l *Listener) servePage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.URL.Path == "/" || r.URL.Path == "/index.html" {
		h.Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "index.html", pageTime, bytes.NewReader(l.index))
		return
	}
	files.ServeHTTP(w, r)
}

// ParseLinkOrigin checks an origin for LinkOrigins ("https://host" or
// "http://host:port", no path) and returns it as a browser writes it:
// lower case, without the scheme's default port.
func ParseLinkOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("%q: want http:// or https://", s)
	case u.Host == "" || u.User != nil || u.Opaque != "":
		return "", fmt.Errorf("%q: want scheme://host[:port]", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", fmt.Errorf("%q: an origin has no path, query or fragment", s)
	}
	name := strings.ToLower(u.Hostname())
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("%q: an address with a zone is no origin", s)
		}
		name = ip.String()
		if ip.Is6() {
			name = "[" + name + "]"
		}
	} else if !hostname(name) {
		return "", fmt.Errorf("%q: want a host name in ASCII (punycode): letters, digits, '-' and '.'", s)
	}
	port := u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: bad port", s)
		}
		port = strconv.Itoa(n)
	}
	if port == "" || (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		return scheme + "://" + name, nil
	}
	return scheme + "://" + name + ":" + port, nil
}

// hostname reports whether s is a DNS name as browsers write it in an
// origin: labels of letters, digits and '-', separated by dots.
func hostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return false
			}
		}
	}
	return true
}
