package tracing

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"rollbook.dev/rollbook/planner"
)

// RolloutAnnotation is the annotation that may carry a rollout's
// traceparent (RolloutTraceParent) on the InPlaceRollout object, so that
// whoever looks at the rollout can join its trace.
const RolloutAnnotation = "rollbook.dev/traceparent"

// Span identity. Every ID is a function of what the journal says and of
// nothing else (no clock, no randomness, no process state), which is what
// lets the spans exported live by the controller and the spans rebuilt
// from the journal months later be the very same spans, and a rollout that
// outlives a controller restart stay one trace:
//
//	trace ID  planner.TraceID(rollout UID)
//	span ID   first 8 bytes of SHA-256("rollbook/span/" + stable name)
//
// with these stable names:
//
//	rollout  <uid>/rollout
//	step     <uid>/step/<index>           (<uid>/step/<index>#<n> when the rollout
//	                                       comes back to that step a second time)
//	pod      <uid>/pod/<pod uid>          (<uid>/pod/<pod uid>#<run> in a later run,
//	                                       see Builder)
//	action   <uid>/action/<key>/<plan seq>/<attempt>
//
// NB: an action's name includes its plan sequence, not only its key and
// attempt. The actuator journals every intent of a plan with attempt 1, so a
// key retried by a later plan (after a conflict, or after an intent
// abandoned by a restart) has the same key and attempt as the first try;
// the plan sequence tells them apart, and like the key and the attempt it
// is known before the intent is appended, so the actuator can compute the
// span ID up front (ActionSpanID) and put it in ActionFact.TraceParent.

// RolloutTraceID is the trace ID of the rollout with this UID:
// planner.TraceID, which the planner also writes into status.traceID.
func RolloutTraceID(uid string) trace.TraceID {
	var id trace.TraceID
	// planner.TraceID is 32 hex digits by construction: a decode error
	// cannot happen, and a zero ID would only make the spans invalid.
	_, _ = hex.Decode(id[:], []byte(planner.TraceID(uid)))
	return id
}

// RolloutSpanID is the ID of the rollout's root span.
func RolloutSpanID(uid string) trace.SpanID { return spanID(uid + "/rollout") }

// StepSpanID is the ID of the n-th span (n from 1) of step index of the
// rollout.
func StepSpanID(uid string, index int32, n int) trace.SpanID {
	return spanID(uid + "/step/" + strconv.FormatInt(int64(index), 10) + nth(n))
}

// PodSpanID is the ID of a pod's span in run n (from 1) of the rollout.
func PodSpanID(uid, podUID string, run int) trace.SpanID {
	return spanID(uid + "/pod/" + podUID + nth(run))
}

// ActionSpanID is the ID of the span of one action attempt: the rollout's
// UID and, from the ActionFact, the action's key, plan sequence and attempt
// (0 counts as 1).
func ActionSpanID(rolloutUID, key string, planSeq uint64, attempt int) trace.SpanID {
	return spanID(rolloutUID + "/action/" + key + "/" + strconv.FormatUint(planSeq, 10) + "/" + strconv.Itoa(max(attempt, 1)))
}

func nth(n int) string {
	if n <= 1 {
		return ""
	}
	return "#" + strconv.Itoa(n)
}

func spanID(name string) trace.SpanID {
	sum := sha256.Sum256([]byte("rollbook/span/" + name))
	var id trace.SpanID
	copy(id[:], sum[:8])
	if !id.IsValid() {
		// An all-zero span ID is invalid in W3C and OTLP. One name in 2^64
		// hashes to it; give it a fixed valid ID rather than drop its span.
		id[7] = 1
	}
	return id
}

// TraceParent is the W3C traceparent of a span: version 00, the IDs in
// lower-case hex and the sampled flag (every span built here is exported,
// so telling receivers otherwise would only make them drop children).
func TraceParent(traceID trace.TraceID, spanID trace.SpanID) string {
	return "00-" + traceID.String() + "-" + spanID.String() + "-01"
}

// RolloutTraceParent is the traceparent of the rollout's root span: the
// value for RolloutAnnotation.
func RolloutTraceParent(uid string) string {
	return TraceParent(RolloutTraceID(uid), RolloutSpanID(uid))
}

// ParseTraceParent reads a version-00 W3C traceparent.
func ParseTraceParent(s string) (trace.TraceID, trace.SpanID, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[3]) != 2 {
		return trace.TraceID{}, trace.SpanID{}, fmt.Errorf("tracing: traceparent %q is not 00-<trace id>-<span id>-<flags>", s)
	}
	tid, err := trace.TraceIDFromHex(parts[1])
	if err != nil {
		return trace.TraceID{}, trace.SpanID{}, fmt.Errorf("tracing: traceparent %q: %w", s, err)
	}
	sid, err := trace.SpanIDFromHex(parts[2])
	if err != nil {
		return trace.TraceID{}, trace.SpanID{}, fmt.Errorf("tracing: traceparent %q: %w", s, err)
	}
	if _, err := hex.DecodeString(parts[3]); err != nil {
		return trace.TraceID{}, trace.SpanID{}, fmt.Errorf("tracing: traceparent %q: flags: %w", s, err)
	}
	return tid, sid, nil
}
