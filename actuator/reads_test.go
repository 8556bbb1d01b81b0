package actuator_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
)

// TestHappyPathWrites: gate, patch, ungate of one pod is three writes and
// no read, as DESIGN.md promises, counted both on the wire and by Writes.
func TestHappyPathWrites(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	uid := string(p.UID)
	e.do(planner.Action{Kind: planner.Gate, Pod: e.ref("web-0"), UID: uid, Revision: "rev2", Reason: planner.ReasonUpdating}, "")
	e.do(planner.Action{Kind: planner.Patch, Pod: e.ref("web-0"), UID: uid, Revision: "rev2",
		Images: []planner.ContainerChange{{Name: "app", From: "rollbook.local/app:v1", To: "rollbook.local/app:v2"}},
		Labels: map[string]string{planner.RevisionLabel: "rev2"}, State: "{}"}, "")
	e.do(planner.Action{Kind: planner.Ungate, Pod: e.ref("web-0"), UID: uid, Revision: "rev2", Reason: planner.ReasonReady}, "")

	if got := e.reqs.all(); len(got) != 3 || !allPrefixed(got, "PATCH ") {
		t.Fatalf("requests %q, want 3 PATCHes", got)
	}
	want := map[string]int64{"patch pods/status": 2, "patch pods": 1}
	if got := e.act.Writes(); !maps.Equal(got, want) {
		t.Fatalf("Writes() = %v, want %v", got, want)
	}
	st := e.act.Stats()
	if st.Latency["gate"].Count != 1 || st.Latency["ungate"].Count != 1 || st.Latency["patch"].Count != 1 || st.Latency["patch"].Sum <= 0 {
		t.Fatalf("latencies %v", st.Latency)
	}
	if st.Outcomes["gate succeeded"] != 1 || st.Outcomes["patch succeeded"] != 1 || st.Outcomes["ungate succeeded"] != 1 {
		t.Fatalf("outcomes %v", st.Outcomes)
	}
}

// TestZeroReads: every kind of action, run as a service account that may
// only patch and create (the rules deploy/rbac.yaml gives the actuator,
// and no get, list or delete), succeeds; and the wire shows only PATCH and
// POST. A read anywhere in the actuator would be refused here.
func TestZeroReads(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "actuator"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/status", "pods/resize"}, Verbs: []string{"patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
			{APIGroups: []string{"rollbook.dev"}, Resources: []string{"inplacerollouts/status"}, Verbs: []string{"patch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
		},
	}
	if _, err := e.cs.RbacV1().Roles(e.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "actuator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "actuator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "actuator", Namespace: e.ns}},
	}
	if _, err := e.cs.RbacV1().RoleBindings(e.ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := e.c.ServiceAccountConfig(ctx, e.ns, "actuator")
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + e.ns + ":actuator"
	// The RBAC authorizer learns of new roles through its informers.
	cluster.Eventually(t, wait, "the role is in force", func() error { return e.allowed(user, "create", "", "events", "") })
	for _, verb := range []string{"get", "list", "delete"} {
		if err := e.allowed(user, verb, "", "pods", ""); err == nil {
			t.Fatalf("the test's role allows %s pods: it would not catch a read or a bare delete", verb)
		}
	}
	e.act = e.newActuator(cfg)

	p := e.pod("web-0")
	r := e.rollout("web")
	uid, ref := string(p.UID), e.ref("web-0")
	for _, act := range []planner.Action{
		{Kind: planner.Gate, Pod: ref, UID: uid, Revision: "rev2", Reason: planner.ReasonUpdating},
		{Kind: planner.Patch, Pod: ref, UID: uid, Revision: "rev2",
			Images:      []planner.ContainerChange{{Name: "app", From: "rollbook.local/app:v1", To: "rollbook.local/app:v2"}},
			Annotations: map[string]string{"new": "v"}, RemoveAnnotations: []string{"note"}, RemoveLabels: []string{"app"}},
		{Kind: planner.Resize, Pod: ref, UID: uid, Revision: "rev2",
			Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "150m"}}}},
		{Kind: planner.Ungate, Pod: ref, UID: uid, Revision: "rev2", Reason: planner.ReasonReady},
		{Kind: planner.Status, Rollout: e.ref("web"), RolloutUID: string(r.GetUID()),
			Status: &projections.RolloutStatus{Phase: projections.PhaseProgressing, Replicas: 1, Updated: 1}},
		{Kind: planner.Event, Rollout: e.ref("web"), RolloutUID: string(r.GetUID()), EventType: corev1.EventTypeNormal, Reason: "Updated", Message: "web-0"},
		{Kind: planner.Recreate, Pod: ref, UID: uid, Revision: "rev3"},
	} {
		e.do(act, "")
	}
	for _, req := range e.reqs.all() {
		method, _, _ := strings.Cut(req, " ")
		switch method {
		case http.MethodPatch, http.MethodPost:
		default:
			t.Errorf("the actuator sent %s", req)
		}
	}
	want := map[string]int64{"patch pods/status": 2, "patch pods": 1, "patch pods/resize": 1,
		"patch inplacerollouts/status": 1, "create events": 1, "create pods/eviction": 1}
	if got := e.act.Writes(); !maps.Equal(got, want) {
		t.Fatalf("Writes() = %v, want %v", got, want)
	}
}

// allowed asks the apiserver whether user may do verb on resource.
func (e *env) allowed(user, verb, group, resource, sub string) error {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: e.ns, Verb: verb, Group: group, Resource: resource, Subresource: sub,
		},
	}}
	out, err := e.cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if !out.Status.Allowed {
		return fmt.Errorf("%s may not %s %s: %s", user, verb, resource, out.Status.Reason)
	}
	return nil
}

func allPrefixed(ss []string, prefix string) bool {
	for _, s := range ss {
		if !strings.HasPrefix(s, prefix) {
			return false
		}
	}
	return true
}

// TestIntendExecute: a plan's intents are journaled together, before any of
// its writes; each Execute then journals its outcome under the same key.
func TestIntendExecute(t *testing.T) {
	e := newEnv(t)
	p0, p1 := e.pod("web-0"), e.pod("web-1")
	acts := []planner.Action{
		{Kind: planner.Gate, Pod: e.ref("web-0"), UID: string(p0.UID), Revision: "rev2", Reason: planner.ReasonUpdating},
		{Kind: planner.Gate, Pod: e.ref("web-1"), UID: string(p1.UID), Revision: "rev2", Reason: planner.ReasonUpdating},
	}
	ctx := context.Background()
	intents, last, err := e.act.Intend(ctx, acts, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(intents) != 2 || last != 2 || len(e.reqs.all()) != 0 {
		t.Fatalf("Intend: %d intents, last seq %d, %d requests", len(intents), last, len(e.reqs.all()))
	}
	for i, act := range acts {
		if _, err := e.act.Execute(ctx, act, intents[i]); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := e.j.Read(ctx, 1, func(r journal.Record) error { got = append(got, r.Kind.String()+" "+r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"ActionIntended " + acts[0].Key(), "ActionIntended " + acts[1].Key(),
		"ActionSucceeded " + acts[0].Key(), "ActionSucceeded " + acts[1].Key()}
	if !slices.Equal(got, want) {
		t.Fatalf("journal\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := condition(e.get("web-1"), planner.GateCondition); c == nil || c.Status != corev1.ConditionFalse {
		t.Fatalf("web-1 gate condition %+v", c)
	}
}
