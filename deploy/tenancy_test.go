package deploy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/test/cluster"
)

// TestRolloutAuthorMayPatchPods: with tenancy.yaml applied, a user who may
// create rollouts but not patch pods is refused a rollout that sets an
// image or selects pods, with a message saying why; one who may patch pods
// (the built-in edit role, which rollbook-edit aggregates into) is
// allowed, and so is the first user's rollout of a workload's own
// template. Viewers read rollouts and cannot create them. Users are
// impersonated by the admin, so the apiserver's own authorizer and
// admission judge them.
func TestRolloutAuthorMayPatchPods(t *testing.T) {
	_, ns := rollouts(t)
	c := cluster.Shared(t)
	ctx := context.Background()
	if _, err := Apply(ctx, c.Config(), Tenancy, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	cs := c.Clientset()
	// alice: a Role that may manage rollouts, nothing about pods.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "rollout-author", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{Group}, Resources: []string{"inplacerollouts"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}}},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind := func(user, kind, name string) {
		t.Helper()
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind("alice", "Role", "rollout-author")
	bind("bob", "ClusterRole", "edit")
	bind("carol", "ClusterRole", "view")
	as := func(user string) dynamic.ResourceInterface {
		cfg := rest.CopyConfig(c.Config())
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		return dynamic.NewForConfigOrDie(cfg).Resource(InPlaceRollouts).Namespace(ns)
	}
	alice, bob, carol := as("alice"), as("bob"), as("carol")

	images := wl + "containers: [{name: app, image: 'registry.example/evil:1'}]\n"
	// The policy and the aggregated roles take effect asynchronously
	// (the policy's type check, the clusterrole-aggregation controller).
	var refused error
	cluster.Eventually(t, time.Minute, "alice's image rollout refused by the policy", func() error {
		_, err := alice.Create(ctx, rollout(t, "evil", images), strict)
		if err == nil {
			_ = alice.Delete(ctx, "evil", metav1.DeleteOptions{})
			return fmt.Errorf("created: the policy is not in force yet")
		}
		if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not patch pods") {
			return err
		}
		refused = err
		return nil
	})
	t.Logf("refused: %v", refused)
	for _, want := range []string{"ValidatingAdmissionPolicy", "alice may not patch pods in namespace " + ns, "sets spec.containers[].image", "kubectl auth can-i patch pods -n " + ns} {
		if !strings.Contains(refused.Error(), want) {
			t.Errorf("refusal %q does not say %q", refused, want)
		}
	}
	resize := "target: {selector: {matchLabels: {app: web}}}\ncontainers: [{name: app, resources: {requests: {cpu: 100m}}}]\n"
	if _, err := alice.Create(ctx, rollout(t, "sel", resize), strict); err == nil || !strings.Contains(err.Error(), "selects pods by spec.target.selector") {
		t.Errorf("alice's selector rollout: %v, want a refusal naming the selector", err)
	}
	// The workload's own template: nothing alice could not already do.
	if _, err := alice.Create(ctx, rollout(t, "own", wl), strict); err != nil {
		t.Errorf("alice's workloadRef rollout without images: %v", err)
	}
	// Pausing it is an edit that changes no pod: allowed.
	if _, err := alice.Patch(ctx, "own", types.MergePatchType, []byte(`{"spec":{"paused":true}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("alice pausing her rollout: %v", err)
	}
	// Adding an image to it is checked like a create.
	if _, err := alice.Patch(ctx, "own", types.MergePatchType, []byte(`{"spec":{"containers":[{"name":"app","image":"registry.example/evil:1"}]}}`), metav1.PatchOptions{}); err == nil || !strings.Contains(err.Error(), "may not patch pods") {
		t.Errorf("alice adding an image to her rollout: %v, want refused", err)
	}
	// bob edits the namespace: rollouts through the aggregated role, and
	// pods, so his rollouts pass.
	cluster.Eventually(t, time.Minute, "bob (edit) creates an image rollout", func() error {
		_, err := bob.Create(ctx, rollout(t, "bobs", images), strict)
		return err
	})
	if _, err := bob.Create(ctx, rollout(t, "bobs-sel", sel), strict); err != nil {
		t.Errorf("bob's selector rollout: %v", err)
	}
	// carol views: reads rollouts through the aggregated view role.
	cluster.Eventually(t, time.Minute, "carol (view) lists rollouts", func() error {
		l, err := carol.List(ctx, metav1.ListOptions{})
		if err == nil && len(l.Items) < 2 {
			return fmt.Errorf("carol sees %d rollouts", len(l.Items))
		}
		return err
	})
	if _, err := carol.Create(ctx, rollout(t, "carols", wl), strict); !apierrors.IsForbidden(err) {
		t.Errorf("carol (view) creating a rollout: %v, want Forbidden", err)
	}
	if _, err := bob.Patch(ctx, "bobs", types.MergePatchType, []byte(`{"status":{"phase":"Succeeded"}}`), metav1.PatchOptions{}, "status"); !apierrors.IsForbidden(err) {
		t.Errorf("bob (edit) writing a rollout's status: %v, want Forbidden (status is the controller's)", err)
	}
}
