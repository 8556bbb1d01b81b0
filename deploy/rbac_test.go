package deploy

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
)

const systemNamespace = "rollbook-system"

var (
	systemNSOnce sync.Once
	systemNSErr  error
)

// ensureSystemNamespace applies the Namespace document of deployment.yaml
// (for real: the namespaced manifests need it), once per test binary. It
// is left in place: other tests of the package share it.
func ensureSystemNamespace(t *testing.T) {
	t.Helper()
	c := cluster.Shared(t)
	systemNSOnce.Do(func() {
		objs, err := Decode(Controller)
		if err != nil {
			systemNSErr = err
			return
		}
		if objs[0].GetKind() != "Namespace" || objs[0].GetName() != systemNamespace {
			systemNSErr = fmt.Errorf("deployment.yaml must start with the %s Namespace, starts with %s %s", systemNamespace, objs[0].GetKind(), objs[0].GetName())
			return
		}
		ns, err := objs[0].MarshalJSON()
		if err != nil {
			systemNSErr = err
			return
		}
		if _, systemNSErr = Apply(context.Background(), c.Config(), ns, ApplyOptions{}); systemNSErr != nil {
			return
		}
		// Pods that name no account (NATS's) are refused until it exists.
		systemNSErr = cluster.WaitDefaultServiceAccount(context.Background(), c.Clientset(), systemNamespace)
	})
	if systemNSErr != nil {
		t.Fatalf("rollbook-system namespace: %v", systemNSErr)
	}
}

// controllerClient applies rbac.yaml and returns a clientset that
// authenticates as the rollbook ServiceAccount.
func controllerClient(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	c := cluster.Shared(t)
	ensureSystemNamespace(t)
	ctx := context.Background()
	if _, err := Apply(ctx, c.Config(), RBAC, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ServiceAccountConfig(ctx, systemNamespace, "rollbook")
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

type access struct {
	verb, group, resource, subresource, namespace, name string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.name != "" {
		r += " " + a.name
	}
	if a.namespace != "" {
		r += " in " + a.namespace
	}
	return a.verb + " " + r
}

// TestRBAC asks the apiserver, as the rollbook ServiceAccount, what it may
// do: every verb the controller needs is allowed, and a sample of what it
// must not do is denied.
func TestRBAC(t *testing.T) {
	cs := controllerClient(t)
	ns := cluster.Shared(t).Namespace(t)
	allowed := []access{
		{verb: "list", resource: "pods", namespace: ns},
		{verb: "watch", resource: "pods", namespace: ns},
		{verb: "list", resource: "pods"}, // all namespaces at once
		{verb: "watch", resource: "pods"},
		{verb: "patch", resource: "pods", namespace: ns},
		{verb: "create", resource: "pods", subresource: "eviction", namespace: ns},
		{verb: "patch", resource: "pods", subresource: "status", namespace: ns},
		{verb: "patch", resource: "pods", subresource: "resize", namespace: ns},
		{verb: "list", group: "apps", resource: "statefulsets"},
		{verb: "watch", group: "apps", resource: "statefulsets"},
		{verb: "list", group: "apps", resource: "daemonsets"},
		{verb: "watch", group: "apps", resource: "daemonsets"},
		{verb: "list", group: "apps", resource: "controllerrevisions"},
		{verb: "watch", group: "apps", resource: "controllerrevisions"},
		{verb: "list", resource: "nodes"},
		{verb: "watch", resource: "nodes"},
		{verb: "list", group: Group, resource: "inplacerollouts"},
		{verb: "watch", group: Group, resource: "inplacerollouts"},
		{verb: "patch", group: Group, resource: "inplacerollouts", subresource: "status", namespace: ns},
		{verb: "create", resource: "events", namespace: ns},
		{verb: "create", group: "authentication.k8s.io", resource: "tokenreviews"},
		{verb: "create", group: "authorization.k8s.io", resource: "subjectaccessreviews"},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace, name: "rollbook"},
		{verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace, name: "rollbook"},
	}
	denied := []access{
		// Reads are the watch: no get.
		{verb: "get", resource: "pods", namespace: ns},
		{verb: "get", group: "apps", resource: "statefulsets", namespace: ns},
		{verb: "get", group: "apps", resource: "controllerrevisions", namespace: ns},
		{verb: "get", resource: "nodes"},
		{verb: "get", group: Group, resource: "inplacerollouts", namespace: ns},
		// Pods change by patch only; none is created (the workload does)
		// and none deleted outright: a recreate is an eviction, which the
		// pod's disruption budget can refuse.
		{verb: "update", resource: "pods", namespace: ns},
		{verb: "create", resource: "pods", namespace: ns},
		{verb: "delete", resource: "pods", namespace: ns},
		{verb: "deletecollection", resource: "pods", namespace: ns},
		{verb: "update", resource: "pods", subresource: "status", namespace: ns},
		{verb: "update", resource: "pods", subresource: "resize", namespace: ns},
		{verb: "create", resource: "pods", subresource: "exec", namespace: ns},
		{verb: "get", resource: "pods", subresource: "log", namespace: ns},
		// Workloads, their revisions, nodes and rollouts are read only.
		{verb: "patch", group: "apps", resource: "statefulsets", namespace: ns},
		{verb: "update", group: "apps", resource: "daemonsets", namespace: ns},
		{verb: "list", group: "apps", resource: "deployments"},
		{verb: "create", group: "apps", resource: "controllerrevisions", namespace: ns},
		{verb: "patch", group: "apps", resource: "controllerrevisions", namespace: ns},
		{verb: "delete", group: "apps", resource: "controllerrevisions", namespace: ns},
		{verb: "delete", resource: "nodes"},
		{verb: "patch", resource: "nodes"},
		{verb: "patch", group: Group, resource: "inplacerollouts", namespace: ns},
		{verb: "update", group: Group, resource: "inplacerollouts", subresource: "status", namespace: ns},
		{verb: "delete", group: Group, resource: "inplacerollouts", namespace: ns},
		{verb: "create", group: Group, resource: "inplacerollouts", namespace: ns},
		// The journal API asks about its callers; the controller is none.
		{verb: "get", group: Group, resource: "inplacerollouts", subresource: "journal"},
		// Nothing else.
		{verb: "list", resource: "secrets"},
		{verb: "get", resource: "secrets", namespace: systemNamespace},
		{verb: "list", resource: "configmaps", namespace: ns},
		{verb: "patch", resource: "events", namespace: ns},
		{verb: "create", resource: "serviceaccounts", subresource: "token", namespace: systemNamespace, name: "rollbook"},
		{verb: "escalate", group: "rbac.authorization.k8s.io", resource: "clusterroles"},
		{verb: "update", group: "apiextensions.k8s.io", resource: "customresourcedefinitions", name: CRDName},
		// Leases: only its own, only in its own namespace.
		{verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: ns},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "rollbook"},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace, name: "kube-scheduler"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace, name: "other"},
		{verb: "delete", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace, name: "rollbook"},
		{verb: "list", group: "coordination.k8s.io", resource: "leases", namespace: systemNamespace},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system", name: "kube-controller-manager"},
	}
	ctx := context.Background()
	check := func(a access, want bool) {
		t.Helper()
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace, Name: a.name,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if r.Status.Allowed != want {
			t.Errorf("%s: allowed=%v, want %v (%s)", a, r.Status.Allowed, want, r.Status.Reason)
		}
	}
	for _, a := range allowed {
		check(a, true)
	}
	for _, a := range denied {
		check(a, false)
	}

	// The review answers the token's user; say it is the one intended.
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Errorf("self subject review: %v", err)
	} else {
		if u := review.Status.UserInfo.Username; u != "system:serviceaccount:rollbook-system:rollbook" {
			t.Errorf("authenticated as %s", u)
		}
	}
}

// TestRBACRealRequests does what the controller does, as the controller:
// the writes it makes succeed, and those it must not make are forbidden.
func TestRBACRealRequests(t *testing.T) {
	cs := controllerClient(t)
	c := cluster.Shared(t)
	admin := c.Clientset()
	ns := c.Namespace(t)
	ctx := context.Background()

	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "app", Image: "registry.example/web:1.0"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "rollbook.dev/InPlaceUpdateReady"}},
			// No node runs it: keep the scheduler from trying.
			NodeName: "nowhere",
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 1 {
		t.Errorf("list pods: %v", err)
	}
	w, err := cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: pod.ResourceVersion})
	if err != nil {
		t.Errorf("watch pods in all namespaces: %v", err)
	} else {
		w.Stop()
	}
	gate := `{"status":{"conditions":[{"type":"rollbook.dev/InPlaceUpdateReady","status":"False","reason":"Updating"}]}}`
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "web-0", types.StrategicMergePatchType, []byte(gate), metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("gate (patch pods/status): %v", err)
	}
	image := fmt.Sprintf(`[{"op":"test","path":"/metadata/uid","value":%q},{"op":"replace","path":"/spec/containers/0/image","value":"registry.example/web:2.0"}]`, pod.UID)
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "web-0", types.JSONPatchType, []byte(image), metav1.PatchOptions{}); err != nil {
		t.Errorf("patch image: %v", err)
	}

	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		}
	}
	_, err = cs.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
	forbidden("get pod", err)
	p := pod.DeepCopy()
	p.Labels["tampered"] = "true"
	_, err = cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
	forbidden("update pod", err)
	_, err = cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden("list secrets", err)
	err = cs.CoreV1().Nodes().Delete(ctx, "nowhere", metav1.DeleteOptions{})
	forbidden("delete node", err)
	_, err = cs.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
	forbidden("patch statefulset", err)

	// Leader election in its own namespace only.
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "rollbook"}}
	if _, err := cs.CoordinationV1().Leases(systemNamespace).Create(ctx, lease, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Errorf("create lease: %v", err)
	}
	l, err := cs.CoordinationV1().Leases(systemNamespace).Get(ctx, "rollbook", metav1.GetOptions{})
	if err != nil {
		t.Errorf("get lease: %v", err)
	} else {
		holder := "rollbook-0"
		l.Spec.HolderIdentity = &holder
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		if _, err := cs.CoordinationV1().Leases(systemNamespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			t.Errorf("update lease: %v", err)
		}
	}
	_, err = cs.CoordinationV1().Leases(ns).Create(ctx, lease, metav1.CreateOptions{})
	forbidden("create lease in another namespace", err)

	// Revisions: listed and watched across namespaces, like the workloads.
	revs, err := cs.AppsV1().ControllerRevisions("").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		t.Errorf("list controllerrevisions: %v", err)
	} else if w, err := cs.AppsV1().ControllerRevisions("").Watch(ctx, metav1.ListOptions{ResourceVersion: revs.ResourceVersion}); err != nil {
		t.Errorf("watch controllerrevisions: %v", err)
	} else {
		w.Stop()
	}

	// Recreate: an eviction with a UID precondition, never a delete.
	// (Grace 0: no kubelet here would confirm a graceful one.)
	zero := int64(0)
	del := metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID)), GracePeriodSeconds: &zero}
	forbidden("delete pod", cs.CoreV1().Pods(ns).Delete(ctx, "web-0", del))
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns}, DeleteOptions: &del}
	if err := cs.PolicyV1().Evictions(ns).Evict(ctx, ev); err != nil {
		t.Errorf("evict pod: %v", err)
	}
}
