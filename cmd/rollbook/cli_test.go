package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
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
		// Flags after positional arguments count.
		{[]string{"history", "ns/r", "--dir", missing}, 1, "no journal at"},
		{[]string{"trace", "ns/r", "-dir", missing, "-o", "json"}, 1, "no journal at"},
		{[]string{"status", "extra", "--dir", missing}, 1, "unexpected arguments"},
		{[]string{"journal", "verify", "extra", "--dir", missing}, 1, "unexpected arguments"},
		{[]string{"history", "--", "--dir"}, 1, `rollout "--dir" is not namespace/name`},
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

// TestStatusOutput: `status -o json|yaml` is the table's content for
// scripts and jq: each rollout's status as the journal last saw it.
func TestStatusOutput(t *testing.T) {
	src := recordSource{export: "../../test/replay/testdata/TestResizeInPlace.jsonl.gz"}
	s := projections.New()
	base := func(b *projections.Books) error { s = b.State; return nil }
	if err := src.readFrom(context.Background(), base, func(r journal.Record) error { return s.Apply(r) }); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(s.Rollouts))
	for _, format := range []string{"json", "yaml"} {
		var buf bytes.Buffer
		if err := ctl.PrintStatus(&buf, format, s, keys); err != nil {
			t.Fatal(err)
		}
		js := buf.Bytes()
		if format == "yaml" {
			var err error
			if js, err = yaml.YAMLToJSON(js); err != nil {
				t.Fatal(err)
			}
		}
		var out struct {
			Rollouts []struct {
				Namespace, Name string
				Status          projections.RolloutStatus
			}
			JournalSequence uint64
		}
		if err := json.Unmarshal(js, &out); err != nil {
			t.Fatalf("%s: %v\n%s", format, err, buf.String())
		}
		if len(out.Rollouts) != 1 || out.Rollouts[0].Status.Phase != "Succeeded" || out.Rollouts[0].Status.Updated != out.Rollouts[0].Status.Replicas || out.JournalSequence != s.Seq {
			t.Fatalf("%s: %+v", format, out)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := cli(context.Background(), []string{"status", "--export", src.export, "-o", "xml"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "use json or yaml") {
		t.Fatalf("-o xml: exit %d, %q", code, stderr.String())
	}
}
