package tracing

import (
	"testing"

	"rollbook.dev/rollbook/planner"
)

// TestPlannerTraceParentMatches: the traceparent the planner writes into a
// rollout's status is the root span's, as this package derives it.
func TestPlannerTraceParentMatches(t *testing.T) {
	for _, uid := range []string{"52f5edb3-6453-44da-9eb1-6111a8205057", "x", ""} {
		if got, want := planner.RolloutTraceParent(uid), RolloutTraceParent(uid); got != want {
			t.Fatalf("uid %q: planner says %s, tracing %s", uid, got, want)
		}
	}
}
