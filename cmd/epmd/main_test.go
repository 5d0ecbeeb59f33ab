package main

import (
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*options) bool
		wantErr bool
	}{
		{"defaults", nil, nil, func(o *options) bool { return o.port == 4369 && !o.relaxed && o.packetTimeout == 60 }, false},
		{"port from the environment", nil, map[string]string{"ERL_EPMD_PORT": "5000"}, func(o *options) bool { return o.port == 5000 }, false},
		{"flag beats the environment", []string{"-port", "6000"}, map[string]string{"ERL_EPMD_PORT": "5000"}, func(o *options) bool { return o.port == 6000 }, false},
		{"relaxed from the environment", nil, map[string]string{"ERL_EPMD_RELAXED_COMMAND_CHECK": "1"}, func(o *options) bool { return o.relaxed }, false},
		{"address from the environment", nil, map[string]string{"ERL_EPMD_ADDRESS": "10.0.0.1,::1"}, func(o *options) bool { return o.address == "10.0.0.1,::1" }, false},
		{"stop takes a name", []string{"-stop", "game"}, nil, func(o *options) bool { return o.stopSet && o.stop == "game" }, false},
		{"debug both spellings", []string{"-debug", "-d"}, nil, func(o *options) bool { return o.debug }, false},
		{"names", []string{"-names"}, nil, func(o *options) bool { return o.names }, false},
		{"unknown flag", []string{"-bogus"}, nil, nil, true},
		{"stray argument", []string{"-names", "extra"}, nil, nil, true},
		{"bad port", []string{"-port", "70000"}, nil, nil, true},
		{"port not a number", []string{"-port", "x"}, nil, nil, true},
		{"stop without a name", []string{"-stop"}, nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"ERL_EPMD_PORT", "ERL_EPMD_RELAXED_COMMAND_CHECK", "ERL_EPMD_ADDRESS"} {
				t.Setenv(k, tc.env[k])
			}
			o, err := parse(tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parse(%q) accepted: %+v", tc.args, o)
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("parse(%q) = %+v, %v", tc.args, o, err)
			}
		})
	}
}
