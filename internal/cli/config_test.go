package cli

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []setting
		err        string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# a comment\n\n   \n# listen = x\n", nil, ""},
		{"settings", "listen = :4000\n  max-per-ip=3  \n-idle-timeout = 1h\n", []setting{
			{"listen", ":4000", "f:1"}, {"max-per-ip", "3", "f:2"}, {"idle-timeout", "1h", "f:3"}}, ""},
		{"quoted", `backend = "game@host"` + "\nmetrics = \"\"\n", []setting{
			{"backend", "game@host", "f:1"}, {"metrics", "", "f:2"}}, ""},
		{"value with =", "backend = a=b\n", []setting{{"backend", "a=b", "f:1"}}, ""},
		{"crlf", "listen = :4000\r\n", []setting{{"listen", ":4000", "f:1"}}, ""},
		{"no equals", "listen :4000\n", nil, `f:1: want name = value, got "listen :4000"`},
		{"no name", " = 3\n", nil, "f:1: missing name before ="},
		{"twice", "listen = :1\n\nlisten = :2\n", nil, "f:3: listen set again (first at f:1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig([]byte(tc.text), "f")
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("setting %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestConfigurePrecedence checks that the command line beats the
// environment, which beats the file, which beats the default.
func TestConfigurePrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.conf")
	if err := os.WriteFile(file, []byte("a = file\nb = file\nc = file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("a", "default", "")
	b := fs.String("b", "default", "")
	c := fs.String("c", "default", "")
	d := fs.String("d", "default", "")
	fs.String("config", "", "")
	err := Configure(fs, []string{"-a", "flag", "-config", file}, "HF", []string{"HF_A=env", "HF_B=env", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	if *a != "flag" || *b != "env" || *c != "file" || *d != "default" {
		t.Errorf("a=%s b=%s c=%s d=%s; want flag env file default", *a, *b, *c, *d)
	}
}

func TestConfigureErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := write("big.conf", strings.Repeat("#", maxConfigFile+1))
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"extra argument", []string{"stray"}, nil, `unexpected arguments: ["stray"]`},
		{"unknown env", nil, []string{"HF_NOPE=1"}, "environment HF_NOPE: no such setting"},
		{"bad env", nil, []string{"HF_N=x"}, `environment HF_N: invalid value "x"`},
		{"unknown in file", []string{"-config", write("u.conf", "nope = 1\n")}, nil, `u.conf:1: no such setting "nope"`},
		{"bad in file", []string{"-config", write("b.conf", "\nn = x\n")}, nil, `b.conf:2: n: invalid value "x"`},
		{"config in file", []string{"-config", write("c.conf", "config = other\n")}, nil, "c.conf:1: a config file cannot name another"},
		{"file too large", []string{"-config", big}, nil, "larger than 1048576 bytes"},
		{"file missing", nil, []string{"HF_CONFIG=" + filepath.Join(dir, "none")}, "config file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.Int("n", 0, "")
			fs.String("config", "", "")
			err := Configure(fs, tc.args, "HF", tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
