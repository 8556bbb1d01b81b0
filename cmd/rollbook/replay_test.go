package main

import (
	"context"
	"path/filepath"
	"testing"
)

// TestReplayOnePassAsTwo: `rollbook replay` reads a recorded rollout once
// and compares exactly the plans and actions the two-pass replay does.
func TestReplayOnePassAsTwo(t *testing.T) {
	paths, err := filepath.Glob("../../test/replay/testdata/*.jsonl.gz")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range paths[:3] {
		src := recordSource{export: path}
		d, one, n, err := replay(context.Background(), src, "", replayMode{})
		if err != nil || d != nil {
			t.Fatalf("%s: one pass: %v %v", path, err, d)
		}
		d, two, n2, err := replayTwoPasses(context.Background(), src, "", replayMode{})
		if err != nil || d != nil {
			t.Fatalf("%s: two passes: %v %v", path, err, d)
		}
		if one.Plans == 0 || one.Plans != two.Plans || one.Actions != two.Actions || n != n2 {
			t.Fatalf("%s: one pass %d records, %s; two passes %d records, %s", path, n, one.Summary(), n2, two.Summary())
		}
	}
}
