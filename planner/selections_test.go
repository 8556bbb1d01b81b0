package planner

import (
	"math/rand"
	"slices"
	"testing"
)

// TestSelectionsAreLists: selections answer as a list per pod would
// (rollouts in the order they came, each once), over random adds and
// removes of a few rollouts on a few pods.
func TestSelectionsAreLists(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	s := newSelections()
	lists := map[string][]string{}
	pods, rollouts := []string{"p0", "p1", "p2"}, []string{"r0", "r1", "r2", "r3"}
	for i := range 5000 {
		k, rk := pods[rng.Intn(len(pods))], rollouts[rng.Intn(len(rollouts))]
		if rng.Intn(2) == 0 {
			s.add(k, rk)
			if !slices.Contains(lists[k], rk) {
				lists[k] = append(lists[k], rk)
			}
		} else {
			s.remove(k, rk)
			lists[k] = slices.DeleteFunc(lists[k], func(o string) bool { return o == rk })
		}
		for _, k := range pods {
			var got []string
			s.each(k, func(rk string) { got = append(got, rk) })
			if !slices.Equal(got, lists[k]) {
				t.Fatalf("step %d: %s is selected by %v, want %v", i, k, got, lists[k])
			}
		}
	}
	if len(s.first) > len(pods) || len(s.more) > len(pods) {
		t.Fatalf("entries left over: %v %v", s.first, s.more)
	}
	for _, k := range pods {
		for _, rk := range rollouts {
			s.remove(k, rk)
		}
	}
	if len(s.first)+len(s.more) != 0 {
		t.Fatalf("pods no rollout selects are still indexed: %v %v", s.first, s.more)
	}
}
