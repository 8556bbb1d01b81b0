// Package planner derives, from the projected state alone, the actions that
// move pods toward their rollouts' targets. It is pure and deterministic:
// no I/O, no clock (now is the state's last Tick), no randomness, no map
// iteration order (a test checks its imports). The caller's loop:
//
//	res := planner.Plan(state)
//	for _, a := range res.Actions {
//		actuator.Do(ctx, a, state.Seq) // journals intent and outcome
//	}
//	// outcomes and the watch come back as records, folded into state;
//	// when res.WakeAt passes, the loop journals a Tick and plans again.
//
// Planning again before the actions' results are folded yields none of
// the same actions: every object with an action in flight is skipped.
package planner
