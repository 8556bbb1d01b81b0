package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandLine: the conventions an operator expects of a CLI: -h
// exits 0 and lists the commands, `version` answers, an unknown command or
// none exits 2, and a journal directory that does not exist is an error,
// not an empty journal made where there was none.
func TestCommandLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo")
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout, or stderr when the code is not 0
	}{
		{[]string{"-h"}, 0, "commands:"},
		{[]string{"--help"}, 0, "replay"},
		{[]string{"version"}, 0, "rollbook "},
		{nil, 2, "usage: rollbook"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"status", "-h"}, 0, ""},
		{[]string{"status", "--dir", missing}, 1, "no journal at " + missing},
		{[]string{"journal", "verify", "--dir", missing}, 1, "no journal at"},
		{[]string{"history", "--dir", missing, "ns/r"}, 1, "no journal at"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli(context.Background(), tc.args, &stdout, &stderr)
		got := stdout.String()
		if tc.code != 0 {
			got = stderr.String()
		}
		if code != tc.code || !strings.Contains(got, tc.out) {
			t.Errorf("rollbook %v: exit %d, want %d; output %q, want it to contain %q", tc.args, code, tc.code, got, tc.out)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a reader created %s: %v", missing, err)
	}
}
