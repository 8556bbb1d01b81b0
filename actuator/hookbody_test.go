package actuator

import (
	"errors"
	"testing"
	"time"

	"rollbook.dev/rollbook/planner"
)

// TestGateBodyCarriesHookMarks: a gate or ungate of a rollout with
// lifecycle hooks sets the marker, removes the release label (null) and
// clears the release condition in its one pods/status patch.
func TestGateBodyCarriesHookMarks(t *testing.T) {
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	got, err := gateBody(planner.Action{Kind: planner.Gate, UID: "u-1", Reason: "InPlaceUpdating", Message: "m",
		Labels: map[string]string{planner.HookLabel: planner.HookPreUpdate}, RemoveLabels: []string{"example.com/drained"},
		ClearConditions: []string{"example.com/Rejoined"}}, false, now)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"uid":"u-1","labels":{"example.com/drained":null,"rollbook.dev/hook":"pre-update"}},"status":{"conditions":[` +
		`{"type":"rollbook.dev/InPlaceUpdateReady","status":"False","reason":"InPlaceUpdating","message":"m","lastTransitionTime":"2031-01-02T03:04:05Z"},` +
		`{"type":"example.com/Rejoined","status":"False","reason":"RollbookWaiting","message":"cleared by Rollbook: a lifecycle hook wait began","lastTransitionTime":"2031-01-02T03:04:05Z"}]}}`
	if string(got) != want {
		t.Fatalf("gate body\n got %s\nwant %s", got, want)
	}

	for name, act := range map[string]planner.Action{
		"set and removed":   {Kind: planner.Ungate, UID: "u", Labels: map[string]string{"a": "1"}, RemoveLabels: []string{"a"}},
		"empty key":         {Kind: planner.Ungate, UID: "u", RemoveLabels: []string{""}},
		"the gate cleared":  {Kind: planner.Gate, UID: "u", ClearConditions: []string{planner.GateCondition}},
		"a condition twice": {Kind: planner.Gate, UID: "u", ClearConditions: []string{"example.com/A", "example.com/A"}},
	} {
		if _, err := gateBody(act, false, now); !errors.Is(err, ErrInvalidAction) {
			t.Errorf("%s: %v, want ErrInvalidAction", name, err)
		}
	}
}
