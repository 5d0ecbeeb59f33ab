package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestLinkOriginsFlag checks -ws-link-origins: none by default, origins
// as a browser writes them, and anything else refused at start.
func TestLinkOriginsFlag(t *testing.T) {
	parse := func(args ...string) (*config, error) {
		var c config
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.register(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return &c, c.validate()
	}
	c, err := parse()
	if err != nil || len(c.linkOrigins) != 0 {
		t.Fatalf("by default: %v, %v", c.linkOrigins, err)
	}
	c, err = parse("-ws-link-origins", "https://Wiki.Example.org, http://x.example:8080/")
	if err != nil || !slices.Equal(c.linkOrigins, []string{"https://wiki.example.org", "http://x.example:8080"}) {
		t.Fatalf("two origins: %q, %v", c.linkOrigins, err)
	}
	for _, bad := range []string{"javascript:alert(1)", "https://a.example/path", "a.example"} {
		if _, err := parse("-ws-link-origins", bad); err == nil || !strings.Contains(err.Error(), "-ws-link-origins") {
			t.Errorf("%q: %v, want it refused", bad, err)
		}
	}
}
