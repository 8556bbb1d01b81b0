package planner

import (
	"maps"
	"slices"

	"rollbook.dev/rollbook/projections"
)

// sameAs reports whether two actions are the same as replay compares
// them: the same String and Key (what an action shows) and sameAction
// (what those do not show). Nearly every pair replay compares has the
// same fields, and for those the answer needs no formatting: String and
// Key are functions of the fields, so sameFields implies them. Only a
// pair that differs somewhere is formatted, which also keeps the fields
// String does not show (a container's index, say) out of the comparison,
// as they always were.
func sameAs(x, y *Action) bool {
	if sameFields(x, y) {
		return true
	}
	return x.String() == y.String() && x.Key() == y.Key() && sameAction(*x, *y)
}

// sameFields: every field of x equal to y's; the statuses as sameAction
// compares them (their counts, conditions and journal sequence), which
// covers all that String shows of a status. TestSameFieldsReadsEveryField
// fails when Action gains a field this does not compare.
func sameFields(x, y *Action) bool {
	if x.Kind != y.Kind || x.Rollout != y.Rollout || x.Pod != y.Pod || x.UID != y.UID || x.Revision != y.Revision ||
		x.Reason != y.Reason || x.Message != y.Message || x.State != y.State || x.EventType != y.EventType ||
		x.RolloutUID != y.RolloutUID || x.CreateAnnotations != y.CreateAnnotations || x.CreateLabels != y.CreateLabels ||
		x.Step != y.Step || x.N != y.N {
		return false
	}
	if !slices.Equal(x.Images, y.Images) || !maps.Equal(x.Labels, y.Labels) || !maps.Equal(x.Annotations, y.Annotations) ||
		!slices.Equal(x.RemoveLabels, y.RemoveLabels) || !slices.Equal(x.RemoveAnnotations, y.RemoveAnnotations) ||
		!slices.Equal(x.ClearConditions, y.ClearConditions) {
		return false
	}
	if !slices.EqualFunc(x.Resources, y.Resources, func(a, b ResourceChange) bool {
		return a.Name == b.Name && a.Index == b.Index && maps.Equal(a.Requests, b.Requests) && maps.Equal(a.Limits, b.Limits)
	}) {
		return false
	}
	if (x.Status == nil) != (y.Status == nil) || x.Status != nil &&
		!(sameStatus(*x.Status, *y.Status, true) && x.Status.JournalSequence == y.Status.JournalSequence) {
		return false
	}
	return sameCheck(x.Check, y.Check)
}

// sameCheck: two analysis checks alike in every field.
func sameCheck(a, b *projections.AnalysisCheck) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Name != b.Name || a.SuccessCondition != b.SuccessCondition || !samePtr(a.IntervalSeconds, b.IntervalSeconds) ||
		!samePtr(a.Passes, b.Passes) || !samePtr(a.FailureLimit, b.FailureLimit) || !samePtr(a.ErrorLimit, b.ErrorLimit) ||
		!samePtr(a.Prometheus, b.Prometheus) {
		return false
	}
	x, y := a.Web, b.Web
	if x == nil || y == nil {
		return x == y
	}
	return x.URL == y.URL && x.Method == y.Method && x.Body == y.Body && x.JSONPath == y.JSONPath &&
		samePtr(x.TimeoutSeconds, y.TimeoutSeconds)
}

// samePtr: both nil, or both pointing at equal values.
func samePtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
