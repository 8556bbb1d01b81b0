package ctl

import (
	"slices"
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestDiffBooks: equal books have no difference; each entry only one side
// holds is named for its side, a changed field by its path, in order, and
// the limit keeps the last line for how many more there are.
func TestDiffBooks(t *testing.T) {
	books := func(pods ...string) *projections.Books {
		b := projections.NewBooks()
		for _, name := range pods {
			b.State.Pods["shop/"+name] = projections.NewPod(&journal.Observed{Resource: "pods", Namespace: "shop", Name: name, UID: "u-" + name, ResourceVersion: "7"})
		}
		b.Open["gate/shop/a"] = projections.OpenIntent{Seq: 3, Fact: projections.IntentFact{Key: "gate/shop/a", Kind: "gate"}}
		return b
	}
	if d := diffBooks(books("a", "b"), books("a", "b"), 0); len(d) != 0 {
		t.Fatalf("equal books differ: %q", d)
	}
	fold, ckpt := books("a", "b", "c"), books("a", "c", "d")
	ckpt.State.Seq = 9
	ckpt.Open["gate/shop/a"] = projections.OpenIntent{Seq: 4, Fact: ckpt.Open["gate/shop/a"].Fact}
	ckpt.State.Pods["shop/c"].UID = journal.MakeUID("u-other")
	want := []string{
		"State.Seq differs",
		"State.Pods[shop/b] is missing from the checkpoint",
		"State.Pods[shop/c].UID differs",
		"State.Pods[shop/d] is only in the checkpoint",
		"Open[gate/shop/a].Seq differs",
	}
	if d := diffBooks(fold, ckpt, 0); !slices.Equal(d, want) {
		t.Fatalf("differences:\n%q\nwant\n%q", d, want)
	}
	if d := diffBooks(fold, ckpt, 3); !slices.Equal(d, append(want[:2:2], "and 3 more")) {
		t.Fatalf("limited to 3: %q", d)
	}
}
