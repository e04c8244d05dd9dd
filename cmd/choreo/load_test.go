package main

import (
	"io"
	"strings"
	"testing"
)

// TestLoadCommandFlags: load's own flags are parsed beside the settings and checked before anything is
// sent (the address below would refuse every connection).
func TestLoadCommandFlags(t *testing.T) {
	vars := map[string]string{"CHOREO_URL": "http://127.0.0.1:1"}
	cases := map[string]struct {
		args []string
		want string
	}{
		"zero rate":       {[]string{"load", "-rate", "0", "-chart", ""}, "rate and a count or a duration must be positive"},
		"unknown outcome": {[]string{"load", "-mix", "confirmed=1,expired=1", "-chart", ""}, `unknown outcome "expired"`},
		"too many lines":  {[]string{"load", "-products", "2", "-lines", "3", "-chart", ""}, "lines 3"},
		"bad url":         {[]string{"load", "-url", "localhost:8080", "-chart", ""}, "want http(s)://host:port"},
		"arguments":       {[]string{"load", "now"}, "load takes no arguments"},
		"unreachable":     {[]string{"load", "-count", "1", "-chart", "", "-kafka-brokers", "127.0.0.1:1"}, "seed product"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(t.Context(), c.args, env(vars), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("choreo %v: %v, want an error with %q", c.args, err, c.want)
			}
		})
	}
}
