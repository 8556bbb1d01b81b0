package actuator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"rollbook.dev/rollbook/journal"
)

// ErrInvalidAction marks an action the actuator cannot turn into a request
// (no UID, no status, a malformed reference). It classifies as invalid: the
// planner produced it, and retrying it unchanged cannot succeed.
var ErrInvalidAction = errors.New("actuator: invalid action")

func invalidActionf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidAction, fmt.Sprintf(format, args...))
}

// Causes the pods/resize admission plugin (PodResizeValidator) attaches to
// its 403 when a resize cannot fit the node or the node's platform.
const (
	causeNodeCapacity        metav1.CauseType = "NodeCapacity"
	causeUnsupportedPlatform metav1.CauseType = "UnsupportedPlatform"
)

// budgetRefused reports whether the apiserver refused an eviction because
// of the pod's PodDisruptionBudget. Found in kube-apiserver v1.37.2's
// eviction handler (pkg/registry/core/pod/storage/eviction.go), each
// checked against the real server by the tests:
//
//   - 429 TooManyRequests, "Cannot evict pod as it would violate the pod's
//     disruption budget.", with one cause of type DisruptionBudget whose
//     message names the budget and why ("The disruption budget web needs 2
//     healthy pods and has 2 currently"); also while the budget's status
//     lags its spec ("... is still being processed by the server").
//   - 403 Forbidden on the poddisruptionbudget with a DisruptionBudget
//     cause, when its disruptionsAllowed is negative or too many evictions
//     await the disruption controller.
//   - 500 with no reason and no details, "This pod has more than one
//     PodDisruptionBudget, which the eviction subresource does not
//     support.": the handler returns that Status as its result.
//
// NB: the 429 is not throttling: retrying at once cannot succeed until
// the budget's pods are ready again, and the status code alone would send
// it to the throttled class.
func budgetRefused(s metav1.Status) bool {
	if hasCause(s, policyv1.DisruptionBudgetCause) {
		return true
	}
	return s.Code == http.StatusInternalServerError && strings.Contains(s.Message, morePDBsMessage)
}

// morePDBsMessage is the apiserver's refusal to evict a pod two budgets
// select (see budgetRefused).
const morePDBsMessage = "more than one PodDisruptionBudget"

// budgetError adds to an eviction's refusal what the budget said: the
// Status message is the same for every budget, the cause names it.
func budgetError(err error) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !budgetRefused(status.Status()) {
		return err
	}
	var why []string
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			if c.Type == policyv1.DisruptionBudgetCause && c.Message != "" {
				why = append(why, c.Message)
			}
		}
	}
	if len(why) == 0 {
		return err
	}
	return &blockedError{err: err, why: strings.Join(why, "; ")}
}

// blockedError is an eviction refused by a disruption budget, with the
// budget's own words.
type blockedError struct {
	err error
	why string
}

func (e *blockedError) Error() string {
	return strings.TrimSuffix(e.err.Error(), ".") + ": " + e.why
}

func (e *blockedError) Unwrap() error { return e.err }

// Classify maps an error of an API write to a journal failure class, which
// tells the planner what to do next:
//
//   - conflict: a precondition failed, replan from fresh state. 409 (a UID
//     precondition of a delete, an optimistic-lock conflict, AlreadyExists),
//     the bare 422 the apiserver answers when a JSON-patch `test` fails or
//     a path the patch expects is missing (the pod moved on since the
//     plan), and the 422 on metadata.uid that a patch carrying a stale UID
//     gets.
//   - gone: 404 for the named object (or its namespace is terminating).
//   - blocked: an eviction the pod's PodDisruptionBudget refuses (a 429 or
//     403 with a DisruptionBudget cause; a pod two budgets select): wait
//     until the budget allows a disruption. Checked before throttled,
//     which the 429 would otherwise be.
//   - invalid: 400, 422 otherwise, 413, a 403 from the resize admission
//     plugin (does not fit the node), or an action the actuator refused to
//     send (ErrInvalidAction).
//   - throttled: 429, 5xx, server and client timeouts, the client-side rate
//     limiter giving up before ctx's deadline, connection errors: back off
//     and retry. Retrying is safe even when the lost write did land: it
//     fails its precondition (conflict), finds the pod gone, or, for gates
//     and events, is the same write again.
//   - abandoned: ctx was cancelled: whether the write landed is unknown,
//     exactly as for an intent whose process died.
//   - other: anything else (RBAC's 403, a 404 for a resource the server
//     does not serve, e.g. the CRD is not installed).
//
// See the package doc for what the apiserver answers to each precondition.
func Classify(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrInvalidAction) {
		return journal.ClassInvalid
	}
	if errors.Is(err, context.Canceled) {
		return journal.ClassAbandoned
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return journal.ClassThrottled
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return classifyStatus(status.Status())
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return journal.ClassThrottled
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) {
		return journal.ClassThrottled
	}
	// NB: client-go wraps x/time/rate's "would exceed context deadline" as
	// text only (%w of an error that wraps nothing), so no errors.Is holds.
	if strings.Contains(err.Error(), "client rate limiter Wait returned an error") {
		return journal.ClassThrottled
	}
	return journal.ClassOther
}

func classifyStatus(s metav1.Status) string {
	err := &apierrors.StatusError{ErrStatus: s}
	switch {
	case budgetRefused(s):
		return journal.ClassBlocked
	case patchPreconditionFailed(s):
		return journal.ClassConflict
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return journal.ClassConflict
	case apierrors.IsNotFound(err):
		// NB: a 404 that names no object means the server does not serve
		// the resource at all (the CRD is missing, no resize subresource):
		// that is not a vanished object, and dropping the action would
		// hide it.
		if s.Details == nil || s.Details.Name == "" {
			return journal.ClassOther
		}
		return journal.ClassGone
	case apierrors.IsGone(err), apierrors.IsResourceExpired(err):
		return journal.ClassGone
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err),
		s.Code >= 500:
		return journal.ClassThrottled
	case apierrors.IsForbidden(err):
		if hasCause(s, corev1.NamespaceTerminatingCause) {
			return journal.ClassGone
		}
		if hasCause(s, causeNodeCapacity) || hasCause(s, causeUnsupportedPlatform) {
			return journal.ClassInvalid
		}
		return journal.ClassOther
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsRequestEntityTooLargeError(err),
		s.Code == http.StatusUnprocessableEntity:
		return journal.ClassInvalid
	}
	return journal.ClassOther
}

// patchPreconditionFailed reports whether a 422 is one of our preconditions
// failing rather than bad content. Found against kube-apiserver v1.37.2:
//
// A JSON patch that cannot be applied — a `test` that fails, or an
// operation on a path that is no longer there — is answered 422, reason
// Invalid, message "the server rejected our request due to an error in our
// request", and empty details: no name, no kind, no causes. The patch
// handler wraps json-patch's error with NewGenericServerResponse and drops
// its text (staging apiserver endpoints/handlers/patch.go, applyJSPatch).
// Every 422 from validation instead names the object and carries a cause
// per field, so an empty 422 is the applier's, and since the actuator's
// patches are well formed, it is one of its preconditions.
//
// A strategic-merge or merge patch carrying metadata.uid, sent to an object
// replaced under the same name, is answered 422, reason Invalid, with one
// cause {reason: FieldValueInvalid, field: metadata.uid, message: "Invalid
// value: \"<planned uid>\": field is immutable"}: the patched object's UID
// differs from the stored one. The same holds for pods/status, pods/resize
// and a custom resource's status.
//
// Both mean the object is not the one the plan saw.
func patchPreconditionFailed(s metav1.Status) bool {
	if s.Code != http.StatusUnprocessableEntity {
		return false
	}
	d := s.Details
	if d == nil || (d.Name == "" && d.Kind == "" && len(d.Causes) == 0) {
		return true
	}
	for _, c := range d.Causes {
		if c.Field == "metadata.uid" {
			return true
		}
	}
	return false
}
func hasCause(s metav1.Status, t metav1.CauseType) bool {
	if s.Details == nil {
		return false
	}
	for _, c := range s.Details.Causes {
		if c.Type == t {
			return true
		}
	}
	return false
}
