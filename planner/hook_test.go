package planner

import (
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestWaitAt places a pod at a hook from its marker, its release and the
// time.
func TestWaitAt(t *testing.T) {
	timeout := int32(60)
	byLabel := &projections.LifecycleHook{Label: &projections.HookLabel{Key: "example.com/drained", Value: "true"}, TimeoutSeconds: &timeout}
	byCond := &projections.LifecycleHook{Condition: "example.com/Drained", TimeoutSeconds: &timeout}
	pod := func(labels map[string]string, conds ...journal.Condition) *projections.Pod {
		return projections.NewPod(&journal.Observed{Labels: labels, Pod: &journal.PodFacts{Conditions: conds}})
	}
	marked := map[string]string{HookLabel: HookPreUpdate}
	truncated := pod(nil)
	truncated.Truncated = "labels, annotations, spec, status, templates and messages dropped: too large"
	const since = int64(1000e9)
	for _, tc := range []struct {
		name string
		pod  *projections.Pod
		hook *projections.LifecycleHook
		now  int64
		want hookState
	}{
		{"no marker", pod(map[string]string{"example.com/drained": "true"}), byLabel, since, hookUnmarked},
		{"the other marker", pod(map[string]string{HookLabel: HookPostUpdate}), byLabel, since, hookUnmarked},
		{"waiting", pod(marked), byLabel, since + 59e9, hookWaiting},
		{"timed out", pod(marked), byLabel, since + 60e9, hookTimedOut},
		{"another value does not release", pod(map[string]string{HookLabel: HookPreUpdate, "example.com/drained": "false"}), byLabel, since, hookWaiting},
		{"released by label", pod(map[string]string{HookLabel: HookPreUpdate, "example.com/drained": "true"}), byLabel, since + 3600e9, hookReleased},
		{"condition False", pod(marked, journal.Condition{Type: "example.com/Drained", Status: "False"}), byCond, since, hookWaiting},
		{"released by condition", pod(marked, journal.Condition{Type: "example.com/Drained", Status: "True"}), byCond, since, hookReleased},
		// Its labels are not on record: waited on, never gated again.
		{"truncated", truncated, byLabel, since, hookWaiting},
	} {
		if got := waitAt(tc.pod, tc.hook, HookPreUpdate, since, tc.now).state; got != tc.want {
			t.Errorf("%s: state %d, want %d", tc.name, got, tc.want)
		}
	}
}
