package link

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CookieFileName is the per-user cookie file in the home directory, after
// Erlang's ~/.erlang.cookie.
const CookieFileName = ".holdfast.cookie"

const maxCookieFile = 4096

// DefaultCookiePath returns ~/.holdfast.cookie.
func DefaultCookiePath() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("link: cookie: %w", err)
	}
	return filepath.Join(home, CookieFileName), nil
}

// LoadCookie reads the cookie from path. When create is set and the file does
// not exist, it first creates one with a random cookie and mode 0400; two
// processes doing so at once end up with the same file. Like Erlang, it
// refuses a file that others than its owner can read.
func LoadCookie(path string, create bool) ([]byte, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := createCookie(path); err != nil {
			return nil, err
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, fmt.Errorf("link: cookie: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("link: cookie file %s must be accessible by its owner only (mode %v)", path, fi.Mode().Perm())
	}
	if fi.Size() > maxCookieFile {
		return nil, fmt.Errorf("link: cookie file %s is larger than %d bytes", path, maxCookieFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("link: cookie: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("link: cookie file %s is empty", path)
	}
	return b, nil
}

// createCookie writes a fresh cookie to a temporary file and links it into
// place, so that the cookie appears whole or not at all, and the first of
// two racing creators wins.
func createCookie(path string) error {
	raw := make([]byte, 24)
	rand.Read(raw)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".holdfast.cookie.*")
	if err != nil {
		return fmt.Errorf("link: create cookie: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(raw) + "\n")
	if err == nil {
		err = tmp.Chmod(0o400)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("link: create cookie: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("link: create cookie: %w", err)
	}
	return nil
}
