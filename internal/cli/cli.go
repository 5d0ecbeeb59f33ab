// Package cli holds what the holdfast commands share: logging, the cookie,
// the registry port.
package cli

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"holdfast/epmd"
	"holdfast/link"
)

// Common holds the flags every daemon takes.
type Common struct {
	LogFormat  string
	LogLevel   string
	CookieFile string
	EPMDPort   int

	// Level is the logger's level, which may be changed while it runs; set
	// by Logger.
	Level zap.AtomicLevel
}

// Register adds the common flags to fs.
func (c *Common) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.LogFormat, "log-format", "json", "log encoding: json, or console for a person at a terminal")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.CookieFile, "cookie-file", "", "file holding the link cookie (default ~/"+link.CookieFileName+", created with mode 0400 if missing)")
	fs.IntVar(&c.EPMDPort, "epmd-port", epmd.PortFromEnv(), "registry port (default from ERL_EPMD_PORT, else 4369)")
}

// Logger builds the logger the flags ask for. Sampling is off: the events
// logged are lifecycle events, and none of them may be dropped.
func (c *Common) Logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	var cfg zap.Config
	switch c.LogFormat {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("-log-format: want json or console, not %q", c.LogFormat)
	}
	cfg.Sampling = nil
	c.Level = zap.NewAtomicLevelAt(level)
	cfg.Level = c.Level
	return cfg.Build()
}

// Cookie loads the cookie, creating the default file when it is missing.
func (c *Common) Cookie() ([]byte, error) {
	if c.CookieFile != "" {
		return link.LoadCookie(c.CookieFile, false)
	}
	path, err := link.DefaultCookiePath()
	if err != nil {
		return nil, err
	}
	return link.LoadCookie(path, true)
}

// EPMDAddr is the local registry's address on the chosen port.
func (c *Common) EPMDAddr() string {
	return "127.0.0.1:" + strconv.Itoa(c.EPMDPort)
}

// Fatal prints err and exits with status 1.
func Fatal(prog string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
	os.Exit(1)
}
