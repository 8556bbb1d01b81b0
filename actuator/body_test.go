package actuator

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// The request bodies are the actuator's contract with the apiserver; these
// pin their exact bytes (the cluster tests prove what they do).

func TestPatchBody(t *testing.T) {
	act := planner.Action{Kind: planner.Patch, Pod: "shop/web-0", UID: "u-1",
		Images: []planner.ContainerChange{
			{Name: "app", Index: 1, From: "web:1", To: "web:2"},
			{Name: "setup", Init: true, Index: 0, From: "setup:1", To: "setup:2"},
		},
		Labels:       map[string]string{"z": "1", "controller-revision-hash": "abc"},
		State:        `{"rev":"abc"}`,
		CreateLabels: true, CreateAnnotations: true,
	}
	got, err := patchBody(act)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"test","path":"/metadata/uid","value":"u-1"},` +
		`{"op":"test","path":"/spec/containers/1/name","value":"app"},` +
		`{"op":"test","path":"/spec/containers/1/image","value":"web:1"},` +
		`{"op":"replace","path":"/spec/containers/1/image","value":"web:2"},` +
		`{"op":"test","path":"/spec/initContainers/0/name","value":"setup"},` +
		`{"op":"test","path":"/spec/initContainers/0/image","value":"setup:1"},` +
		`{"op":"replace","path":"/spec/initContainers/0/image","value":"setup:2"},` +
		`{"op":"test","path":"/metadata/labels","value":null},` +
		`{"op":"add","path":"/metadata/labels","value":{}},` +
		`{"op":"add","path":"/metadata/labels/controller-revision-hash","value":"abc"},` +
		`{"op":"add","path":"/metadata/labels/z","value":"1"},` +
		`{"op":"test","path":"/metadata/annotations","value":null},` +
		`{"op":"add","path":"/metadata/annotations","value":{}},` +
		`{"op":"add","path":"/metadata/annotations/rollbook.dev~1state","value":"{\"rev\":\"abc\"}"}]`
	if string(got) != want {
		t.Fatalf("patch body\n got %s\nwant %s", got, want)
	}
}

// TestPatchBodyMetadata: template annotations are added next to the state
// annotation, removals are bare removes after the adds (sorted, escaped),
// and nothing addresses a whole map except the creation of an absent one.
func TestPatchBodyMetadata(t *testing.T) {
	act := planner.Action{Kind: planner.Patch, Pod: "shop/web-0", UID: "u-1",
		Labels:            map[string]string{"tier": "front"},
		RemoveLabels:      []string{"zeta", "old/one"},
		Annotations:       map[string]string{"b.example/x": "2", "a": "1"},
		RemoveAnnotations: []string{"gone~it"},
		State:             "{}",
	}
	got, err := patchBody(act)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"test","path":"/metadata/uid","value":"u-1"},` +
		`{"op":"add","path":"/metadata/labels/tier","value":"front"},` +
		`{"op":"remove","path":"/metadata/labels/old~1one"},` +
		`{"op":"remove","path":"/metadata/labels/zeta"},` +
		`{"op":"add","path":"/metadata/annotations/a","value":"1"},` +
		`{"op":"add","path":"/metadata/annotations/b.example~1x","value":"2"},` +
		`{"op":"add","path":"/metadata/annotations/rollbook.dev~1state","value":"{}"},` +
		`{"op":"remove","path":"/metadata/annotations/gone~0it"}]`
	if string(got) != want {
		t.Fatalf("patch body\n got %s\nwant %s", got, want)
	}
	if act.Annotations[planner.StateAnnotation] != "" || len(act.Annotations) != 2 {
		t.Fatalf("patchBody changed the action's annotations: %v", act.Annotations)
	}
}

// TestPatchBodyAnnotationsOnly: template annotations without a state still
// create an absent map first; removals alone make a patch.
func TestPatchBodyAnnotationsOnly(t *testing.T) {
	got, err := patchBody(planner.Action{Kind: planner.Patch, Pod: "shop/web-0", UID: "u-1",
		Annotations: map[string]string{"new": "v"}, CreateAnnotations: true})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"test","path":"/metadata/uid","value":"u-1"},` +
		`{"op":"test","path":"/metadata/annotations","value":null},` +
		`{"op":"add","path":"/metadata/annotations","value":{}},` +
		`{"op":"add","path":"/metadata/annotations/new","value":"v"}]`
	if string(got) != want {
		t.Fatalf("patch body\n got %s\nwant %s", got, want)
	}
	got, err = patchBody(planner.Action{Kind: planner.Patch, Pod: "shop/web-0", UID: "u-1", RemoveLabels: []string{"old"}})
	if err != nil {
		t.Fatal(err)
	}
	want = `[{"op":"test","path":"/metadata/uid","value":"u-1"},{"op":"remove","path":"/metadata/labels/old"}]`
	if string(got) != want {
		t.Fatalf("patch body\n got %s\nwant %s", got, want)
	}
}

// TestPatchBodyContradictions: a patch that would fail every time as a
// conflict, and so be planned again for ever, is refused as invalid.
func TestPatchBodyContradictions(t *testing.T) {
	base := planner.Action{Kind: planner.Patch, Pod: "shop/web-0", UID: "u-1"}
	for name, mutate := range map[string]func(*planner.Action){
		"nothing": func(a *planner.Action) {},
		"empty maps and lists": func(a *planner.Action) {
			a.Labels, a.Annotations, a.RemoveLabels = map[string]string{}, map[string]string{}, []string{}
		},
		"label set and removed": func(a *planner.Action) { a.Labels, a.RemoveLabels = map[string]string{"x": "1"}, []string{"x"} },
		"label removed twice":   func(a *planner.Action) { a.RemoveLabels = []string{"x", "x"} },
		"empty label removed":   func(a *planner.Action) { a.RemoveLabels = []string{""} },
		"annotation set, removed": func(a *planner.Action) {
			a.Annotations, a.RemoveAnnotations = map[string]string{"x": "1"}, []string{"x"}
		},
		"state removed": func(a *planner.Action) { a.State, a.RemoveAnnotations = "{}", []string{planner.StateAnnotation} },
		"state twice": func(a *planner.Action) {
			a.State, a.Annotations = "{}", map[string]string{planner.StateAnnotation: "{}"}
		},
		"removal from absent map": func(a *planner.Action) {
			a.CreateLabels, a.Labels, a.RemoveLabels = true, map[string]string{"y": "1"}, []string{"x"}
		},
		"removal from absent annos": func(a *planner.Action) { a.CreateAnnotations, a.RemoveAnnotations = true, []string{"x"} },
	} {
		act := base
		mutate(&act)
		if _, err := patchBody(act); !errors.Is(err, ErrInvalidAction) {
			t.Errorf("%s: %v, want ErrInvalidAction", name, err)
		}
	}
}

// TestBudgetError: an eviction the budget refuses reads with the budget's
// own message, and still classifies through the wrapping; other errors
// pass unchanged.
func TestBudgetError(t *testing.T) {
	refused := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	refused.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget web needs 2 healthy pods and has 2 currently"}}
	err := budgetError(refused)
	want := "Cannot evict pod as it would violate the pod's disruption budget: The disruption budget web needs 2 healthy pods and has 2 currently"
	if err.Error() != want || !errors.Is(err, refused) || Classify(err) != journal.ClassBlocked {
		t.Fatalf("budgetError = %q (class %q), want %q, wrapping the refusal", err, Classify(err), want)
	}
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "Pod"}, "web-0", errors.New("the UID in the precondition does not match"))
	if got := budgetError(conflict); got != error(conflict) {
		t.Fatalf("budgetError of a conflict = %v, want it unchanged", got)
	}
}

func TestEscapePointer(t *testing.T) {
	for in, want := range map[string]string{
		"app":                "app",
		"rollbook.dev/state": "rollbook.dev~1state",
		"a~b/c":              "a~0b~1c",
		"~1":                 "~01", // '~' first, or "~1" would come back as "/"
	} {
		if got := escapePointer(in); got != want {
			t.Errorf("escapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGateBody(t *testing.T) {
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	got, err := gateBody(planner.Action{Kind: planner.Gate, UID: "u-1", Reason: "InPlaceUpdating", Message: "m"}, false, now)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"uid":"u-1"},"status":{"conditions":[{"type":"rollbook.dev/InPlaceUpdateReady","status":"False","reason":"InPlaceUpdating","message":"m","lastTransitionTime":"2031-01-02T03:04:05Z"}]}}`
	if string(got) != want {
		t.Fatalf("gate body\n got %s\nwant %s", got, want)
	}
}

func TestResizeBody(t *testing.T) {
	got, err := resizeBody(planner.Action{Kind: planner.Resize, Pod: "shop/web-0", UID: "u-1",
		Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "500m"}, Limits: map[string]string{"memory": "1Gi"}}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"uid":"u-1"},"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"1Gi"},"requests":{"cpu":"500m"}}}]}}`
	if string(got) != want {
		t.Fatalf("resize body\n got %s\nwant %s", got, want)
	}
	_, err = resizeBody(planner.Action{Kind: planner.Resize, Pod: "shop/web-0", UID: "u-1",
		Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "lots"}}}})
	if !errors.Is(err, ErrInvalidAction) {
		t.Fatalf("a bad quantity: %v, want ErrInvalidAction", err)
	}
}

func TestStatusBodyDoesNotMutateTheAction(t *testing.T) {
	st := &projections.RolloutStatus{Phase: "Progressing", Conditions: []metav1.Condition{{Type: "Progressing", Status: "True", Reason: "R", Message: "m"}}}
	act := planner.Action{Kind: planner.Status, Rollout: "shop/r", RolloutUID: "u-1", Status: st}
	body, err := statusBody(act, time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"lastTransitionTime":"2031-01-02T03:04:05Z"`) ||
		!strings.HasPrefix(string(body), `[{"op":"test","path":"/metadata/uid","value":"u-1"},{"op":"add","path":"/status","value":{`) {
		t.Fatalf("status body %s", body)
	}
	if !st.Conditions[0].LastTransitionTime.IsZero() {
		t.Fatal("statusBody stamped the planner's status in place")
	}
}

func TestEventName(t *testing.T) {
	act := planner.Action{Kind: planner.Event, Rollout: "shop/r", RolloutUID: "u-1", Reason: "Paused", Message: "step 1"}
	a, b := eventName(act, "r"), eventName(act, "r")
	if a != b || !strings.HasPrefix(a, "r.") {
		t.Fatalf("event names %q, %q: want equal, deterministic, prefixed by the rollout", a, b)
	}
	other := act
	other.Message = "step 2"
	if eventName(other, "r") == a {
		t.Fatal("different events share a name")
	}
	long := eventName(act, strings.Repeat("x", 253))
	if len(long) > 253 {
		t.Fatalf("event name of %d characters", len(long))
	}
}

func TestInvalidActions(t *testing.T) {
	for _, act := range []planner.Action{
		{Kind: "frobnicate", Pod: "shop/web-0", UID: "u"},
		{Kind: planner.Gate, Pod: "shop/web-0"},      // no UID
		{Kind: planner.Gate, Pod: "web-0", UID: "u"}, // no namespace
		{Kind: planner.Patch, Pod: "shop/web-0", UID: "u"},
		{Kind: planner.Patch, Pod: "shop/web-0", UID: "u", Images: []planner.ContainerChange{{Name: "app", From: "a:1"}}},
		{Kind: planner.Resize, Pod: "shop/web-0", UID: "u"},
		{Kind: planner.Status, Rollout: "shop/r", RolloutUID: "u"},
		{Kind: planner.Status, Rollout: "shop/r", Status: &projections.RolloutStatus{}},
		{Kind: planner.Event, Rollout: "shop/r", RolloutUID: "u", Reason: "X", EventType: "Loud"},
	} {
		a := &Actuator{opts: Options{}.withDefaults()}
		_, err := a.perform(t.Context(), act)
		if !errors.Is(err, ErrInvalidAction) || Classify(err) != "invalid" {
			t.Errorf("%s: %v (class %q), want ErrInvalidAction", act, err, Classify(err))
		}
	}
}

func TestRequestKey(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"PATCH", "/api/v1/namespaces/shop/pods/web-0/status", "patch pods/status"},
		{"PATCH", "/api/v1/namespaces/shop/pods/web-0", "patch pods"},
		{"DELETE", "/api/v1/namespaces/shop/pods/web-0", "delete pods"},
		{"POST", "/api/v1/namespaces/shop/pods/web-0/eviction", "create pods/eviction"},
		{"POST", "/api/v1/namespaces/shop/events", "create events"},
		{"PATCH", "/apis/rollbook.dev/v1alpha1/namespaces/shop/inplacerollouts/r/status", "patch inplacerollouts/status"},
		{"GET", "/api/v1/namespaces/shop/pods", "list pods"},
		{"GET", "/api/v1/namespaces/shop/pods/web-0", "get pods"},
		{"GET", "/api/v1/nodes", "list nodes"},
	} {
		req := &http.Request{Method: c.method, URL: &url.URL{Path: c.path}}
		if got := requestKey(req); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Config and Journal")
	}
	if err := (Options{Config: &rest.Config{}, Journal: &journal.Journal{}, QPS: -1}).validate(); err == nil {
		t.Fatal("negative QPS accepted")
	}
	if err := (Options{Config: &rest.Config{}, Journal: &journal.Journal{}, Burst: -1}).validate(); err == nil {
		t.Fatal("negative Burst accepted")
	}
	o := Options{}.withDefaults()
	if o.QPS != DefaultQPS || o.Burst != DefaultBurst || o.FieldManager != "rollbook" || o.Clock == nil || o.Logger == nil {
		t.Fatalf("defaults %+v", o)
	}
}
