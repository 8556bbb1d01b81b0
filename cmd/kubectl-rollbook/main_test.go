package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCommandLine: the conventions of a kubectl plugin's command line:
// help on standard output with exit 0, a version, exit 2 for a command
// line that is wrong (unknown command or flag, missing or extra
// arguments), flags after arguments parsed. (TestKubectlPlugin in
// cmd/rollbook drives the verbs against a cluster.)
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout, or stderr when the code is not 0
	}{
		{[]string{"--help"}, 0, "abort"},
		{[]string{"-h"}, 0, "undo"},
		{[]string{"version"}, 0, "kubectl-rollbook "},
		{[]string{"status", "--help"}, 0, "--timeout"},
		{[]string{"history", "-h"}, 0, "--controller"},
		{nil, 2, "usage: kubectl rollbook"},
		{[]string{"rollout"}, 2, `unknown command "rollout"`},
		{[]string{"status"}, 2, "takes 1 argument(s)"},
		{[]string{"get", "a", "b"}, 2, "at most one argument"},
		{[]string{"get", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"approve", "web", "--bogus"}, 2, "unknown flag: --bogus"}, // a flag after the argument is parsed
		{[]string{"plan"}, 2, "give a manifest (-f FILE) or a rollout's NAME"},
		{[]string{"get", "-o", "xml"}, 1, "use json or yaml"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		got := stdout.String()
		if tc.code != 0 {
			got = stderr.String()
		}
		if code != tc.code || !strings.Contains(got, tc.out) {
			t.Errorf("kubectl rollbook %v: exit %d, want %d; output %q, want it to contain %q", tc.args, code, tc.code, got, tc.out)
		}
	}
}
