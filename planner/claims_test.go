package planner

import (
	"fmt"
	"slices"
	"strings"

	"rollbook.dev/rollbook/projections"
)

// claimsAgree checks what the incremental planner keeps of its rollouts'
// claims between plans: every unit's pods are sorted by key (unit.find
// searches them), its claims are sorted and are its own in the claims
// map, and the map holds no claim that no unit makes. world.plan asks it
// after every incremental plan.
func (in *Incremental) claimsAgree() error {
	held := 0
	for rk, u := range in.units {
		if !slices.IsSortedFunc(u.pods, func(a, b *projections.Pod) int { return strings.Compare(a.Key(), b.Key()) }) {
			return fmt.Errorf("rollout %s: its pods are not sorted by key", rk)
		}
		keys := u.claimed()
		if !slices.IsSorted(keys) {
			return fmt.Errorf("rollout %s: its claims are not sorted", rk)
		}
		me := claimantOf(rk)
		for _, k := range keys {
			if c, ok := in.claims[k]; !ok || c != me {
				return fmt.Errorf("rollout %s claims pod %s, which the claims map gives to %q", rk, k, c.Value())
			}
		}
		held += len(keys)
	}
	if held != len(in.claims) {
		return fmt.Errorf("the claims map holds %d claims, the rollouts' last plans %d", len(in.claims), held)
	}
	return nil
}
