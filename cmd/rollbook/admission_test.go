package main

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/webhook"
)

// admittedSTS is a StatefulSet as a user writes it: no service account,
// the readiness gate, template labels and annotations; what a real
// cluster's admission adds to its pods, the template never says.
func admittedSTS(name string, replicas int32, labels, annotations map[string]string) *appsv1.StatefulSet {
	sts := kwokStatefulSet(name, stsOpts{replicas: replicas, gate: true})
	sts.Spec.Template.Labels = map[string]string{"app": name} // not the selector's map
	for k, v := range labels {
		sts.Spec.Template.Labels[k] = v
	}
	sts.Spec.Template.Annotations = annotations
	sts.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	return sts
}

// TestAdmissionMutatedPodsStayInPlace: pods that the default admission
// chain and a mesh-injecting webhook changed (a service account and its
// token volume, an injected sidecar with a volume, env, annotation and
// label, the zone label copied from the node at binding) are updated in place when their template's
// image, labels, annotations and resources change: the change applied is
// the one between the two revisions, labels and annotations the template
// dropped are removed, and everything admission added is left as it was.
func TestAdmissionMutatedPodsStayInPlace(t *testing.T) {
	c := cluster.Shared(t)
	inj := webhook.Install(t, c, webhook.Options{PodLabels: map[string]string{"mesh.example/cell": "injected"}})
	ns := inj.Namespace(t, c)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	const replicas = 6
	sts := admittedSTS("web", replicas, map[string]string{"old": "yes", "tier": "silver"}, map[string]string{"scrape": "true", "owner": "team-a"})
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", replicas, 2*time.Minute)
	before := podsByName(t, c, ns)
	for name, p := range before {
		if p.Spec.ServiceAccountName != "default" || len(p.Spec.Containers) != 3 || !hasTokenVolume(p) {
			t.Fatalf("%s was not changed by admission as a real cluster would (serviceAccountName %q, %d containers, token volume %v)",
				name, p.Spec.ServiceAccountName, len(p.Spec.Containers), hasTokenVolume(p))
		}
	}

	// One template change of image, metadata (added, changed, removed) and
	// resources.
	patch := `{"spec":{"template":{
		"metadata":{"labels":{"old":null,"tier":"gold"},"annotations":{"scrape":null,"owner":"team-b","version":"2"}},
		"spec":{"containers":[{"name":"app","image":"registry.example/app:v2","resources":{"requests":{"cpu":"150m"}}}]}}}}`
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	createRollout(t, c, ns, "web-v2", workloadRollout("web", map[string]any{"maxUnavailable": 2}))
	st := waitPhase(t, c, ns, "web-v2", "Succeeded", 3*time.Minute)
	if st.Updated != replicas {
		t.Errorf("status updated %d, want %d", st.Updated, replicas)
	}
	var updateRevision string
	cluster.Eventually(t, time.Minute, "updatedReplicas", func() error {
		s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		updateRevision = s.Status.UpdateRevision
		if s.Status.UpdatedReplicas != replicas {
			return fmt.Errorf("updatedReplicas %d", s.Status.UpdatedReplicas)
		}
		return nil
	})
	after := podsByName(t, c, ns)
	for name, b := range before {
		a := after[name]
		if a.UID != b.UID {
			t.Fatalf("%s was recreated, not updated in place", name)
		}
		if got := a.Spec.Containers[0].Image; got != "registry.example/app:v2" {
			t.Errorf("%s: app runs %s", name, got)
		}
		if got := a.Spec.Containers[0].Resources.Requests.Cpu().String(); got != "150m" {
			t.Errorf("%s: app cpu request %s, want 150m", name, got)
		}
		// The zone label is the node's, copied when the pod was bound.
		want := map[string]string{"tier": "gold", "mesh.example/cell": "injected", planner.RevisionLabel: updateRevision,
			"topology.kubernetes.io/zone": b.Labels["topology.kubernetes.io/zone"]}
		if want["topology.kubernetes.io/zone"] == "" {
			t.Errorf("%s: no zone label copied from its node before the rollout", name)
		}
		for k, v := range want {
			if a.Labels[k] != v {
				t.Errorf("%s: label %s=%q, want %q (labels %v)", name, k, a.Labels[k], v, a.Labels)
			}
		}
		if _, ok := a.Labels["old"]; ok {
			t.Errorf("%s: label old, which the template dropped, is still there", name)
		}
		for k, v := range map[string]string{"owner": "team-b", "version": "2", webhook.InjectedAnnotation: "true"} {
			if a.Annotations[k] != v {
				t.Errorf("%s: annotation %s=%q, want %q", name, k, a.Annotations[k], v)
			}
		}
		if _, ok := a.Annotations["scrape"]; ok {
			t.Errorf("%s: annotation scrape, which the template dropped, is still there", name)
		}
		// What admission added: untouched.
		if a.Spec.ServiceAccountName != "default" || !hasTokenVolume(a) || len(a.Spec.Containers) != 3 || a.Spec.Containers[2].Name != webhook.SidecarName ||
			a.Spec.Containers[2].Image != b.Spec.Containers[2].Image || envValue(a.Spec.Containers[0], webhook.EnvName) != envValue(b.Spec.Containers[0], webhook.EnvName) {
			t.Errorf("%s: what admission added changed:\nbefore %+v\nafter  %+v", name, b.Spec, a.Spec)
		}
		// Only app restarted.
		if ab, aa := containerStatus(b, "app"), containerStatus(a, "app"); aa.RestartCount != ab.RestartCount+1 {
			t.Errorf("%s: app restarts %d → %d, want one restart", name, ab.RestartCount, aa.RestartCount)
		}
		for _, sidecar := range []string{"log", webhook.SidecarName} {
			if sb, sa := containerStatus(b, sidecar), containerStatus(a, sidecar); sa.RestartCount != sb.RestartCount || sa.ContainerID != sb.ContainerID {
				t.Errorf("%s: sidecar %s restarted (%s/%d → %s/%d)", name, sidecar, sb.ContainerID, sb.RestartCount, sa.ContainerID, sa.RestartCount)
			}
		}
	}
	r.waitSeen(t, ns+"/web-v2", "Succeeded")
	r.stop(t)
	au := readAudit(t, dir)
	for pod, kinds := range au.actions {
		if kinds["gate"] != 1 || kinds["patch"] != 1 || kinds["resize"] != 1 || kinds["ungate"] != 2 || kinds["recreate"] != 0 {
			t.Errorf("pod %s: writes %v, want gate 1, patch 1, resize 1, ungate 2; its records:\n%s", pod, kinds, podRecords(t, dir, pod))
		}
	}
	checkReplay(t, dir)
}

func hasTokenVolume(p corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil {
			return true
		}
	}
	return false
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestRecreateNamesFieldAndHonoursBudget: a change that cannot be made in
// place recreates pods through the Eviction API: the rollout's condition
// and a Warning Event name the field, a PodDisruptionBudget that allows
// no disruption holds every pod (EvictionBlocked says so), and once the
// budget allows it the rollout completes.
func TestRecreateNamesFieldAndHonoursBudget(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	startController(t, c, t.TempDir(), ns)
	const replicas = 3
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("db", stsOpts{replicas: replicas, gate: true, env: "a"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "db", replicas, 2*time.Minute)
	all := intstr.FromInt32(replicas)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &all, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "the budget allows no disruption", func() error {
		p, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.ObservedGeneration != p.Generation || p.Status.CurrentHealthy != replicas || p.Status.DisruptionsAllowed != 0 {
			return fmt.Errorf("pdb status %+v", p.Status)
		}
		return nil
	})
	before := podsByName(t, c, ns)
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"MODE","value":"b"}]}]}}}}`
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, "db", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	createRollout(t, c, ns, "db-env", workloadRollout("db", map[string]any{"maxUnavailable": 1}))
	cluster.Eventually(t, time.Minute, "NotInPlace names the field and EvictionBlocked the budget", func() error {
		st, err := rolloutStatus(c, ns, "db-env")
		if err != nil {
			return err
		}
		nip, eb := condition(st, "NotInPlace"), condition(st, "EvictionBlocked")
		if nip == nil || nip.Reason != "Recreating" || !strings.Contains(nip.Message, "spec.containers[app].env") {
			return fmt.Errorf("conditions: %s", condSummary(st.Conditions))
		}
		if eb == nil || eb.Status != metav1.ConditionTrue || !strings.Contains(eb.Message, "disruption budget") {
			return fmt.Errorf("conditions: %s", condSummary(st.Conditions))
		}
		return nil
	})
	cluster.Eventually(t, 30*time.Second, "a Warning Event naming the field", func() error {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Type == "Warning" && e.Reason == "Recreating" && strings.Contains(e.Message, "spec.containers[app].env") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none a Recreating warning", len(evs.Items))
	})
	for name, p := range podsByName(t, c, ns) {
		if p.UID != before[name].UID || p.DeletionTimestamp != nil {
			t.Fatalf("%s was evicted although its budget allowed no disruption", name)
		}
	}
	// The budget allows one: the rollout proceeds one pod at a time.
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, "db", types.MergePatchType, []byte(`{"spec":{"minAvailable":2}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, c, ns, "db-env", "Succeeded", 4*time.Minute)
	for name, p := range podsByName(t, c, ns) {
		if p.UID == before[name].UID || envValue(p.Spec.Containers[0], "MODE") != "b" {
			t.Fatalf("%s: not recreated with the new env", name)
		}
	}
}

// TestRecreateLoopStops: when a replacement, made by the workload from
// the target revision, cannot take the target either (the rollout asks for
// resources that would change the pods' QoS class, which the template does
// not carry), the rollout stops after at most maxUnavailable evictions
// with a condition naming the pod and the field, and leaves no pod gated.
func TestRecreateLoopStops(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	const replicas = 4
	sts := kwokStatefulSet("web", stsOpts{replicas: replicas, gate: true})
	burstable := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	guaranteed := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
	}
	sts.Spec.Template.Spec.Containers[0].Resources = burstable
	sts.Spec.Template.Spec.Containers[1].Resources = guaranteed
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", replicas, 2*time.Minute)
	before := podsByName(t, c, ns)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	spec := workloadRollout("web", map[string]any{"maxUnavailable": 1})
	spec["containers"] = []any{map[string]any{"name": "app", "resources": map[string]any{"requests": map[string]any{"cpu": "200m"}}}}
	createRollout(t, c, ns, "web-qos", spec)
	// NB: the rollout may be seen before the StatefulSet's new template;
	// planned against the old one, whose pods are already at its revision,
	// it stops at once (rightly: evicting them would make the same pods),
	// until the new template arrives. So wait for the stop that follows an
	// eviction.
	var st projections.RolloutStatus
	cluster.Eventually(t, 3*time.Minute, "stopped after one eviction", func() error {
		var err error
		if st, err = rolloutStatus(c, ns, "web-qos"); err != nil {
			return err
		}
		nip := condition(st, "NotInPlace")
		if st.Phase != "Failed" || nip == nil || nip.Reason != "RecreatedPodDiffers" || !strings.Contains(nip.Message, "QoS class") || !strings.Contains(nip.Message, "web-") {
			return fmt.Errorf("phase %s, conditions: %s", st.Phase, condSummary(st.Conditions))
		}
		for name, p := range podsByName(t, c, ns) {
			if p.UID != before[name].UID && p.Status.Phase == corev1.PodRunning {
				return nil
			}
		}
		return fmt.Errorf("no pod replaced yet (phase %s)", st.Phase)
	})
	r.waitSeen(t, ns+"/web-qos", "Failed")
	cluster.Eventually(t, time.Minute, "no pod left gated", func() error {
		for name, p := range podsByName(t, c, ns) {
			for _, cd := range p.Status.Conditions {
				if cd.Type == planner.GateCondition && cd.Status != corev1.ConditionTrue {
					return fmt.Errorf("%s is gated", name)
				}
			}
		}
		return nil
	})
	r.stop(t)
	evicted := 0
	for pod, kinds := range readAudit(t, dir).actions {
		if kinds["recreate"] > 1 {
			t.Errorf("%s evicted %d times", pod, kinds["recreate"])
		}
		evicted += kinds["recreate"]
	}
	replaced := 0
	for name, p := range podsByName(t, c, ns) {
		if p.UID != before[name].UID {
			replaced++
		}
	}
	if evicted > 1 || replaced > 1 {
		t.Fatalf("%d evictions, %d pods replaced: maxUnavailable is 1", evicted, replaced)
	}
	if evicted == 0 {
		t.Fatalf("no eviction: the rollout stopped before trying (conditions %s)", condSummary(st.Conditions))
	}
}

// TestRefusedPatchReleasesGates: a ValidatingAdmissionPolicy refuses the
// new image on every pod. The gated pods' patches cannot succeed; after a
// few tries the rollout stops (Failed, WriteFailed quoting the policy),
// no other pod is started, and every pod is back in its Service: none is
// left gated with nothing driving it.
func TestRefusedPatchReleasesGates(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	policy := "deny-forbidden-" + ns
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: policy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: `object.spec.containers.all(c, !c.image.contains("forbidden"))`,
				Message:    "images marked forbidden are not allowed here",
			}},
		},
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, vap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(context.Background(), policy, metav1.DeleteOptions{})
		_ = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(context.Background(), policy, metav1.DeleteOptions{})
	})
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const replicas = 6
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: replicas, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", replicas, 2*time.Minute)
	// The apiserver loads policies and bindings from its own watch: wait
	// until it enforces this one (a dry-run patch is refused).
	cluster.Eventually(t, time.Minute, "the policy is enforced", func() error {
		probe := `[{"op":"replace","path":"/spec/containers/0/image","value":"registry.example/app:probe-forbidden"}]`
		_, err := cs.CoreV1().Pods(ns).Patch(ctx, "web-0", types.JSONPatchType, []byte(probe), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return errors.New("a forbidden image was accepted")
		}
		if !strings.Contains(err.Error(), "forbidden are not allowed") {
			return err
		}
		return nil
	})
	before := podsByName(t, c, ns)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2-forbidden")
	createRollout(t, c, ns, "web-v2", workloadRollout("web", map[string]any{"maxUnavailable": 2}))
	st := waitPhase(t, c, ns, "web-v2", "Failed", 3*time.Minute)
	if f := condition(st, "Failed"); f == nil || f.Reason != "WriteFailed" || !strings.Contains(f.Message, "forbidden are not allowed") {
		t.Fatalf("conditions: %s", condSummary(st.Conditions))
	}
	r.waitSeen(t, ns+"/web-v2", "Failed")
	checkFailureMetrics(t, r, "patch")
	cluster.Eventually(t, time.Minute, "every pod ready and ungated", func() error {
		for name, p := range podsByName(t, c, ns) {
			for _, cd := range p.Status.Conditions {
				if (cd.Type == planner.GateCondition || cd.Type == corev1.PodReady) && cd.Status != corev1.ConditionTrue {
					return fmt.Errorf("%s: %s is %s", name, cd.Type, cd.Status)
				}
			}
		}
		return nil
	})
	r.stop(t)
	gated := 0
	for pod, kinds := range readAudit(t, dir).actions {
		if kinds["patch"] != 0 {
			t.Errorf("%s: a patch succeeded through the policy", pod)
		}
		if kinds["gate"] > 0 {
			gated++
		}
	}
	if gated > 2 {
		t.Errorf("%d pods were gated; maxUnavailable is 2 and the rollout should stop at its first batch", gated)
	}
	for name, p := range podsByName(t, c, ns) {
		if p.UID != before[name].UID || p.Spec.Containers[0].Image != before[name].Spec.Containers[0].Image {
			t.Errorf("%s changed", name)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// checkFailureMetrics: /metrics counts the failed actions of kind by the
// class their ActionFailed records in the journal carry, one for one.
func checkFailureMetrics(t *testing.T, r *running, kind string) {
	t.Helper()
	srv := &metricsServer{}
	srv.lead(context.Background(), r.c)
	hs := httptest.NewServer(srv.mux())
	defer hs.Close()
	cluster.Eventually(t, 30*time.Second, "failures in /metrics as in the journal", func() error {
		byClass := map[string]float64{}
		err := r.c.j.Read(context.Background(), 1, func(rec journal.Record) error {
			if rec.Kind != journal.KindActionFailed {
				return nil
			}
			var f journal.ActionFact
			if err := rec.Decode(&f); err != nil {
				return err
			}
			if f.Kind == kind {
				byClass[f.Class]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(byClass) == 0 {
			return fmt.Errorf("no failed %s in the journal", kind)
		}
		fams, err := scrapeMetrics(hs.URL)
		if err != nil {
			return err
		}
		for _, class := range failureClasses {
			got, ok := metricValue(fams, "rollbook_action_failures_total", map[string]string{"kind": kind, "class": class})
			if !ok || got != byClass[class] {
				return fmt.Errorf("rollbook_action_failures_total{kind=%q,class=%q} is %v (present: %v); the journal holds %v", kind, class, got, ok, byClass[class])
			}
		}
		t.Logf("failed %s actions by class: %v", kind, byClass)
		return nil
	})
}
