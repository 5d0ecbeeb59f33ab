package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxConfigFile bounds a configuration file; a real one is a few hundred
// bytes, and anything larger is a wrong path.
const maxConfigFile = 1 << 20

// Configure sets fs from, in order of precedence, the command line, the
// environment (PREFIX_NAME for flag -name, upper case, dashes as
// underscores), the file named by the flag -config if fs has one and it
// is set, and the flags' defaults. Every error names where the bad value
// came from.
func Configure(fs *flag.FlagSet, args []string, prefix string, environ []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if rest, ok := strings.CutPrefix(k, prefix+"_"); ok {
			env[rest] = v
		}
	}
	byEnv := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { byEnv[EnvName(f.Name)] = f })
	for k := range env {
		if byEnv[k] == nil {
			return fmt.Errorf("environment %s_%s: no such setting", prefix, k)
		}
	}

	var file []setting
	if f := fs.Lookup("config"); f != nil {
		path := f.Value.String()
		if v, ok := env[EnvName("config")]; ok && !onCommandLine["config"] {
			path = v
		}
		if path != "" {
			var err error
			if file, err = readConfig(path); err != nil {
				return err
			}
		}
	}
	for _, s := range file {
		if s.name == "config" {
			return fmt.Errorf("%s: a config file cannot name another", s.where)
		}
		if fs.Lookup(s.name) == nil {
			return fmt.Errorf("%s: no such setting %q", s.where, s.name)
		}
		if onCommandLine[s.name] {
			continue
		}
		if _, ok := env[EnvName(s.name)]; ok {
			continue
		}
		if err := fs.Set(s.name, s.value); err != nil {
			return fmt.Errorf("%s: %s: invalid value %q: %w", s.where, s.name, s.value, err)
		}
	}
	for k, v := range env {
		f := byEnv[k]
		if onCommandLine[f.Name] || f.Name == "config" {
			continue
		}
		if err := fs.Set(f.Name, v); err != nil {
			return fmt.Errorf("environment %s_%s: invalid value %q: %w", prefix, k, v, err)
		}
	}
	return nil
}

// EnvName is the environment variable suffix for a flag name.
func EnvName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// setting is one line of a configuration file.
type setting struct {
	name, value string
	where       string // file:line
}

// readConfig reads a configuration file: one "name = value" per line,
// names being the flags' without the dash; blank lines and lines starting
// with # are ignored; a value may be quoted with double quotes.
func readConfig(path string) ([]setting, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	return parseConfig(b, path)
}

// parseConfig parses the text of a configuration file named path.
func parseConfig(b []byte, path string) ([]setting, error) {
	var out []setting
	seen := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		where := fmt.Sprintf("%s:%d", path, i+1)
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: want name = value, got %q", where, line)
		}
		name = strings.TrimPrefix(strings.TrimSpace(name), "-")
		value = strings.TrimSpace(value)
		if name == "" {
			return nil, fmt.Errorf("%s: missing name before =", where)
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s: %s set again (first at %s)", where, name, prev)
		}
		seen[name] = where
		out = append(out, setting{name: name, value: value, where: where})
	}
	return out, nil
}
