package gateway

import (
	"regexp"
	"testing"
)

func TestIDPrefix(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{8}-$`)
	seen := map[string]bool{}
	for range 1000 {
		p := newIDPrefix()
		if !form.MatchString(p) {
			t.Fatalf("prefix %q", p)
		}
		if seen[p] {
			t.Fatalf("prefix %q twice in a thousand", p)
		}
		seen[p] = true
	}
}
