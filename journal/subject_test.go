package journal

import "testing"

// TestSubject: a record's subject is its kind and the namespace its key
// names, in the key shapes the controller writes, so that "rb.*.shop"
// selects everything about namespace shop; keys naming no namespace (or
// one that is not a valid token) go to "_".
func TestSubject(t *testing.T) {
	for _, c := range []struct {
		kind Kind
		key  string
		want string
	}{
		{KindObserved, "pods/shop/web-0", "rb.observed.shop"},
		{KindObserved, "statefulsets.apps/shop/web", "rb.observed.shop"},
		{KindActionIntended, "inplacerollouts.rollbook.dev/shop/web-2-0", "rb.actionintended.shop"},
		{KindActionSucceeded, "gate/shop/web-0/uid-1/rev-2", "rb.actionsucceeded.shop"},
		{KindObserved, "nodes/node-1", "rb.observed._"},
		{KindTick, "tick", "rb.tick._"},
		{KindVanished, "pods/we.ird/x", "rb.vanished._"},
		{KindVanished, "pods//x", "rb.vanished._"},
		// Watch cursors (ingest's cursorName): "watch/<resource>" for a
		// cluster-wide watch, "watch/<resource>/<namespace>" for one
		// namespace's; the resource is no namespace, dots or not.
		{KindCursor, "watch/pods", "rb.cursor._"},
		{KindCursor, "watch/nodes", "rb.cursor._"},
		{KindCursor, "watch/statefulsets.apps", "rb.cursor._"},
		{KindCursor, "watch/pods/shop", "rb.cursor.shop"},
		{KindCursor, "watch/statefulsets.apps/shop", "rb.cursor.shop"},
		{KindCursor, "watch/inplacerollouts.rollbook.dev/team-1", "rb.cursor.team-1"},
		{KindCursor, "watch/pods/", "rb.cursor._"},
		{KindCursor, "watch/pods/shop/extra", "rb.cursor._"},
		{KindCursor, "watch/pods/we.ird", "rb.cursor._"},
	} {
		if got := Subject("rb", Record{Kind: c.kind, Key: c.key}); got != c.want {
			t.Errorf("Subject(%v, %q) = %q, want %q", c.kind, c.key, got, c.want)
		}
	}
}
