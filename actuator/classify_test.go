package actuator_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
)

// TestClassifyTable covers the classes on errors as client-go hands them
// over; the cluster tests cover what the real apiserver answers.
func TestClassifyTable(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"409 conflict", apierrors.NewConflict(pods, "web-0", errors.New("the UID in the precondition does not match")), journal.ClassConflict},
		{"409 already exists", apierrors.NewAlreadyExists(pods, "web-0"), journal.ClassConflict},
		{"422 empty (failed json-patch test)", &apierrors.StatusError{ErrStatus: metav1.Status{Code: 422, Reason: metav1.StatusReasonInvalid, Details: &metav1.StatusDetails{}}}, journal.ClassConflict},
		{"422 on metadata.uid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "web-0", field.ErrorList{field.Invalid(field.NewPath("metadata", "uid"), "u-1", "field is immutable")}), journal.ClassConflict},
		{"422 on an image", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "web-0", field.ErrorList{field.Invalid(field.NewPath("spec", "containers").Index(0).Child("image"), "a ", "must not have leading or trailing whitespace")}), journal.ClassInvalid},
		{"400", apierrors.NewBadRequest("bad"), journal.ClassInvalid},
		{"404 named", apierrors.NewNotFound(pods, "web-0"), journal.ClassGone},
		{"404 unnamed (resource not served)", apierrors.NewGenericServerResponse(404, "PATCH", schema.GroupResource{}, "", "", 0, false), journal.ClassOther},
		{"410", apierrors.NewGone("gone"), journal.ClassGone},
		{"429", apierrors.NewTooManyRequests("slow down", 1), journal.ClassThrottled},
		{"429 disruption budget", budgetRefusal(apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)), journal.ClassBlocked},
		{"403 disruption budget", budgetRefusal(apierrors.NewForbidden(schema.GroupResource{Group: "policy", Resource: "poddisruptionbudget"}, "web", errors.New("pdb disruptions allowed is negative"))), journal.ClassBlocked},
		{"500 two budgets", &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500,
			Message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}}, journal.ClassBlocked},
		{"500", apierrors.NewInternalError(errors.New("boom")), journal.ClassThrottled},
		{"503", apierrors.NewServiceUnavailable("later"), journal.ClassThrottled},
		{"504", apierrors.NewTimeoutError("slow", 1), journal.ClassThrottled},
		{"server timeout", apierrors.NewServerTimeout(pods, "patch", 1), journal.ClassThrottled},
		{"403 rbac", apierrors.NewForbidden(pods, "web-0", errors.New("cannot patch")), journal.ClassOther},
		{"403 node capacity", forbiddenWith("NodeCapacity"), journal.ClassInvalid},
		{"403 namespace terminating", forbiddenWith("NamespaceTerminating"), journal.ClassGone},
		{"deadline", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), journal.ClassThrottled},
		{"cancelled", &url.Error{Op: "Patch", URL: "https://x", Err: context.Canceled}, journal.ClassAbandoned},
		{"connection refused", &url.Error{Op: "Patch", URL: "https://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, journal.ClassThrottled},
		{"client rate limiter", fmt.Errorf("client rate limiter Wait returned an error: %w", errors.New("rate: Wait(n=1) would exceed context deadline")), journal.ClassThrottled},
		{"invalid action", fmt.Errorf("x: %w", actuator.ErrInvalidAction), journal.ClassInvalid},
		{"anything else", errors.New("what"), journal.ClassOther},
	} {
		if got := actuator.Classify(c.err); got != c.want {
			t.Errorf("%s: Classify = %q, want %q", c.name, got, c.want)
		}
	}
}

func budgetRefusal(err *apierrors.StatusError) error {
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget web needs 2 healthy pods and has 2 currently"})
	return err
}

func forbiddenWith(cause metav1.CauseType) error {
	err := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web-0", errors.New("no"))
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: cause})
	return err
}

// TestClassifyUnservedResource: a write to a resource the server does not
// serve (as when the CRD is not installed) is "other", not "gone": no
// object vanished, and the action must not be dropped silently.
func TestClassifyUnservedResource(t *testing.T) {
	e := newEnv(t)
	dyn, err := dynamic.NewForConfig(e.c.Config())
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "nothing.rollbook.dev", Version: "v1", Resource: "things"}
	_, err = dyn.Resource(gvr).Namespace(e.ns).Patch(context.Background(), "x", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}, "status")
	t.Logf("unserved resource: %s", statusJSON(err))
	if got := actuator.Classify(err); got != journal.ClassOther {
		t.Fatalf("Classify = %q, want other", got)
	}
}

// TestCancelledMidCall: ctx ends while the write is on the wire. Whether it
// landed is unknown, so the outcome is "abandoned"; it is journaled all the
// same, ctx or not.
func TestCancelledMidCall(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	ctx, cancel := context.WithCancel(context.Background())
	e.reqs.onRequest = func(*http.Request) { cancel() }
	act := planner.Action{Kind: planner.Gate, Pod: e.ref("web-0"), UID: string(p.UID), Reason: planner.ReasonUpdating}
	e.seq++
	fact, err := e.act.Do(ctx, act, e.seq, 1)
	if err == nil || errors.Is(err, actuator.ErrJournal) || fact.Class != journal.ClassAbandoned {
		t.Fatalf("Do: class %q, err %v; want abandoned, journaled", fact.Class, err)
	}
	e.checkJournal(act, fact)
}

// TestInvalidActionJournaled: an action the actuator cannot send is still
// journaled, intent and failure, and sends nothing.
func TestInvalidActionJournaled(t *testing.T) {
	e := newEnv(t)
	e.do(planner.Action{Kind: planner.Gate, Pod: e.ref("web-0"), Reason: planner.ReasonUpdating}, journal.ClassInvalid)
	// A Status without a status (Action.String would dereference it).
	e.do(planner.Action{Kind: planner.Status, Rollout: e.ref("r"), RolloutUID: "u"}, journal.ClassInvalid)
	if got := e.reqs.all(); len(got) != 0 {
		t.Fatalf("requests %q for an invalid action", got)
	}
	if n := e.act.Stats().Outcomes["gate invalid"]; n != 1 {
		t.Fatalf("outcome counter gate/invalid = %d, want 1", n)
	}
}
