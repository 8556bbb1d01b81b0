package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

func setImage(t *testing.T, c *cluster.Cluster, ns, sts, container, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, container, image)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Patch(context.Background(), sts, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func workloadRollout(sts string, strategy map[string]any) map[string]any {
	return map[string]any{
		"target":   map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts}},
		"strategy": strategy,
	}
}

// TestStatefulSetsInPlace: 1,000 pods in two StatefulSets rolled in place
// with maxUnavailable 10% scattered over 3 zones: every pod updated with
// exactly one gate, one patch and one ungate; only the app container
// restarted; the StatefulSets count every pod as updated; never more than
// the budget gated at once; each batch spread over the zones.
func TestStatefulSetsInPlace(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	rc := startOTLPReceiver(t)
	r := startController(t, c, dir, ns)
	const replicas = 500
	for _, name := range []string{"web", "api"} {
		if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet(name, stsOpts{replicas: replicas, gate: true}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitSTSReady(t, c, ns, "web", replicas, 4*time.Minute)
	waitSTSReady(t, c, ns, "api", replicas, 4*time.Minute)
	before := podsByName(t, c, ns)
	for _, name := range []string{"web", "api"} {
		setImage(t, c, ns, name, "app", "registry.example/app:v2")
		createRollout(t, c, ns, name+"-v2", workloadRollout(name, map[string]any{
			"maxUnavailable": "10%", "scatter": []any{map[string]any{"key": "topology.kubernetes.io/zone"}},
		}))
	}
	for _, name := range []string{"web", "api"} {
		st := waitPhase(t, c, ns, name+"-v2", "Succeeded", 6*time.Minute)
		if st.Updated != replicas || st.UpdatedReady != replicas {
			t.Errorf("%s: status updated %d ready %d, want %d", name, st.Updated, st.UpdatedReady, replicas)
		}
		cluster.Eventually(t, time.Minute, name+" updatedReplicas", func() error {
			s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if s.Status.UpdatedReplicas != replicas || s.Status.ReadyReplicas != replicas {
				return fmt.Errorf("updatedReplicas %d readyReplicas %d", s.Status.UpdatedReplicas, s.Status.ReadyReplicas)
			}
			return nil
		})
	}
	after := podsByName(t, c, ns)
	for name, b := range before {
		a, ok := after[name]
		if !ok || a.UID != b.UID {
			t.Fatalf("pod %s was recreated", name)
		}
		if a.Spec.Containers[0].Image != "registry.example/app:v2" {
			t.Fatalf("pod %s runs %s", name, a.Spec.Containers[0].Image)
		}
		if oa, ob := containerStatus(a, "app"), containerStatus(b, "app"); oa.ContainerID == ob.ContainerID || oa.RestartCount != ob.RestartCount+1 {
			t.Fatalf("pod %s: app container not restarted once (%s → %s, restarts %d → %d)", name, ob.ContainerID, oa.ContainerID, ob.RestartCount, oa.RestartCount)
		}
	}
	checkContainersKept(t, c, r, ns, before, "app")
	r.waitSeen(t, ns+"/web-v2", "Succeeded")
	r.waitSeen(t, ns+"/api-v2", "Succeeded")
	r.stop(t)
	checkSpans(t, rc, dir, ns+"/web-v2", ns+"/api-v2")
	au := readAudit(t, dir)
	for pod, kinds := range au.actions {
		if kinds["gate"] != 1 || kinds["patch"] != 1 || kinds["ungate"] != 2 {
			t.Fatalf("pod %s: writes %v, want gate 1, patch 1, ungate 2 (one when first seen, one after verify); its records:\n%s", pod, kinds, podRecords(t, dir, pod))
		}
	}
	if len(au.actions) != 2*replicas {
		t.Fatalf("%d pods written, want %d", len(au.actions), 2*replicas)
	}
	if au.maxGated > 2*replicas/10 {
		t.Fatalf("%d pods gated at once, budget is %d", au.maxGated, 2*replicas/10)
	}
	// Scatter: the first gates spread over all three zones.
	zones := map[string]int{}
	for _, pod := range au.firstGated[:30] {
		zones[zoneOf(t, c, after[pod])]++
	}
	for _, z := range fleet.Zones {
		if zones[z] < 6 {
			t.Fatalf("first 30 gated pods by zone %v: not scattered", zones)
		}
	}
}

func zoneOf(t *testing.T, c *cluster.Cluster, p corev1.Pod) string {
	n, err := c.Clientset().CoreV1().Nodes().Get(context.Background(), p.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Labels["topology.kubernetes.io/zone"]
}

// TestSelectorSidecarRollout: a fleet-wide sidecar update by label
// selector over bare pods: the sidecar alone restarts in every pod.
func TestSelectorSidecarRollout(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	const n = 200
	createBarePods(t, c, ns, "worker-%03d", n, map[string]string{"team": "blue"})
	cluster.Eventually(t, 3*time.Minute, "pods ready", func() error { return allReady(c, ns, n) })
	before := podsByName(t, c, ns)
	createRollout(t, c, ns, "log-v2", map[string]any{
		"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"team": "blue"}}},
		"containers": []any{map[string]any{"name": "log", "image": "registry.example/log:v2"}},
		"strategy":   map[string]any{"maxUnavailable": "10%", "scatter": []any{map[string]any{"key": "topology.kubernetes.io/zone"}}},
	})
	waitPhase(t, c, ns, "log-v2", "Succeeded", 4*time.Minute)
	for name, a := range podsByName(t, c, ns) {
		b := before[name]
		if l := containerStatus(a, "log"); l.ContainerID == containerStatus(b, "log").ContainerID || !strings.HasSuffix(a.Spec.Containers[1].Image, "log:v2") {
			t.Fatalf("%s: sidecar not updated", name)
		}
	}
	checkContainersKept(t, c, r, ns, before, "log")
}

// createBarePods creates n pods named prefix-<i> with labels and the
// readiness gate, owned by no workload (what a selector rollout targets).
func createBarePods(t *testing.T, c *cluster.Cluster, ns, format string, n int, labels map[string]string) {
	t.Helper()
	for i := range n {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf(format, i), Labels: labels},
			Spec:       kwokStatefulSet("x", stsOpts{gate: true}).Spec.Template.Spec,
		}
		if _, err := c.Clientset().CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func allReady(c *cluster.Cluster, ns string, want int) error {
	list, err := c.Clientset().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := 0
	for _, p := range list.Items {
		for _, cd := range p.Status.Conditions {
			if cd.Type == corev1.PodReady && cd.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != want {
		return fmt.Errorf("%d/%d pods ready", ready, want)
	}
	return nil
}

// TestFailedImagePausesThenRecovers: an image that cannot be pulled never
// verifies; the rollout pauses with a condition naming the pod and reason,
// touching no more pods than its budget, and a fixed template resumes it.
func TestFailedImagePausesThenRecovers(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 20, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 20, 2*time.Minute)
	before := podsByName(t, c, ns)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2-pullfail")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 2, "verifyTimeoutSeconds": int64(3)}))
	st := waitPhase(t, c, ns, "web", "Paused", 2*time.Minute)
	cond := condition(st, "Failed")
	if cond == nil || cond.Status != "True" || !strings.Contains(cond.Message, "ImagePull") {
		t.Fatalf("Failed condition %+v does not say what went wrong", cond)
	}
	pods := podsByName(t, c, ns)
	touched := 0
	for _, p := range pods {
		if strings.Contains(p.Spec.Containers[0].Image, "pullfail") {
			touched++
		}
	}
	if touched > 2 {
		t.Fatalf("%d pods patched to the failing image, budget 2", touched)
	}
	// kubectl describe shows why: a Warning Event on the rollout.
	cluster.Eventually(t, 30*time.Second, "Warning event on the rollout", func() error {
		evs, err := c.Clientset().CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=InPlaceRollout,involvedObject.name=web"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Type == "Warning" && e.Reason == "Paused" && strings.Contains(e.Message, "ImagePull") {
				return nil
			}
		}
		return fmt.Errorf("events: %+v", evs.Items)
	})
	setImage(t, c, ns, "web", "app", "registry.example/app:v3")
	waitPhase(t, c, ns, "web", "Succeeded", 2*time.Minute)
	if err := allReady(c, ns, 20); err != nil {
		t.Fatal(err)
	}
	checkContainersKept(t, c, r, ns, before, "app")
}

// TestCrashLoopRollsBack: onFailure Rollback puts updated pods back on
// their recorded images, in place.
func TestCrashLoopRollsBack(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	r := startController(t, c, t.TempDir(), ns)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 8, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 8, 2*time.Minute)
	before := podsByName(t, c, ns)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2-crashloop")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 2, "verifyTimeoutSeconds": int64(3), "onFailure": "Rollback"}))
	waitPhase(t, c, ns, "web", "RolledBack", 2*time.Minute)
	cluster.Eventually(t, time.Minute, "all pods ready on v1", func() error {
		for name, p := range podsByName(t, c, ns) {
			if p.UID != before[name].UID {
				return fmt.Errorf("%s recreated", name)
			}
			if p.Spec.Containers[0].Image != "registry.example/app:v1" {
				return fmt.Errorf("%s runs %s", name, p.Spec.Containers[0].Image)
			}
		}
		return allReady(c, ns, 8)
	})
	checkContainersKept(t, c, r, ns, before, "app")
}

// TestSameDigestRetagVerified: a new tag with the same digest is verified
// by the new container, not hung on an unchanged imageID.
func TestSameDigestRetagVerified(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	r := startController(t, c, t.TempDir(), ns)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(context.Background(), kwokStatefulSet("web", stsOpts{replicas: 6, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 6, 2*time.Minute)
	before := podsByName(t, c, ns)
	setImage(t, c, ns, "web", "app", "registry.example/app:v1-samedigest")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 3}))
	waitPhase(t, c, ns, "web", "Succeeded", 2*time.Minute)
	for name, p := range podsByName(t, c, ns) {
		a, b := containerStatus(p, "app"), containerStatus(before[name], "app")
		if a.ImageID != b.ImageID {
			t.Fatalf("%s: samedigest image changed imageID (%s → %s): the test image is wrong", name, b.ImageID, a.ImageID)
		}
		if a.ContainerID == b.ContainerID {
			t.Fatalf("%s: verified without a new container", name)
		}
	}
	checkContainersKept(t, c, r, ns, before, "app")
}

// TestEnvChangeFallsBackToRecreate: a template change that cannot be
// applied in place recreates the pods (fallback Recreate) or is refused
// with a condition (fallback Never).
func TestEnvChangeFallsBackToRecreate(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	startController(t, c, t.TempDir(), ns)
	cs := c.Clientset()
	for _, name := range []string{"recreate", "never"} {
		if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet(name, stsOpts{replicas: 4, gate: true, env: "a"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSTSReady(t, c, ns, name, 4, 2*time.Minute)
	}
	before := podsByName(t, c, ns)
	for _, name := range []string{"recreate", "never"} {
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"MODE","value":"b"}]}]}}}}`
		if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createRollout(t, c, ns, "recreate", workloadRollout("recreate", map[string]any{"maxUnavailable": 2}))
	createRollout(t, c, ns, "never", workloadRollout("never", map[string]any{"maxUnavailable": 2, "fallback": "Never"}))
	waitPhase(t, c, ns, "recreate", "Succeeded", 3*time.Minute)
	cluster.Eventually(t, 30*time.Second, "NotInPlace condition", func() error {
		st, err := rolloutStatus(c, ns, "never")
		if err != nil {
			return err
		}
		if cd := condition(st, "NotInPlace"); cd == nil || cd.Status != "True" || !strings.Contains(cd.Message, "env") {
			return fmt.Errorf("conditions: %s", condSummary(st.Conditions))
		}
		return nil
	})
	for name, p := range podsByName(t, c, ns) {
		recreated := p.UID != before[name].UID
		if strings.HasPrefix(name, "recreate-") && (!recreated || p.Spec.Containers[0].Env[0].Value != "b") {
			t.Fatalf("%s: not recreated with the new env", name)
		}
		if strings.HasPrefix(name, "never-") && recreated {
			t.Fatalf("%s: recreated although fallback is Never", name)
		}
	}
}

// TestResizeInPlace: CPU and memory changed through pods/resize, without
// restarting a container or recreating the pod.
func TestResizeInPlace(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	r := startController(t, c, t.TempDir(), ns)
	for i := range 4 {
		spec := kwokStatefulSet("x", stsOpts{gate: true}).Spec.Template.Spec
		spec.Containers[0].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r-%d", i), Labels: map[string]string{"resize": "yes"}}, Spec: spec}
		if _, err := c.Clientset().CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cluster.Eventually(t, time.Minute, "pods ready", func() error { return allReady(c, ns, 4) })
	before := podsByName(t, c, ns)
	createRollout(t, c, ns, "grow", map[string]any{
		"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"resize": "yes"}}},
		"containers": []any{map[string]any{"name": "app", "resources": map[string]any{"requests": map[string]any{"cpu": "200m"}}}},
	})
	waitPhase(t, c, ns, "grow", "Succeeded", 2*time.Minute)
	for name, p := range podsByName(t, c, ns) {
		if p.UID != before[name].UID {
			t.Fatalf("%s recreated", name)
		}
		if got := p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; got.String() != "200m" {
			t.Fatalf("%s: cpu request %s", name, got.String())
		}
		if a := containerStatus(p, "app"); a.RestartCount != 0 || a.Resources == nil || a.Resources.Requests.Cpu().String() != "200m" {
			t.Fatalf("%s: app status %+v", name, a)
		}
	}
	checkContainersKept(t, c, r, ns, before) // a resize restarts nothing
}

// TestBadInputReportedByConditions: what the schema cannot check is
// reported on the rollout with what to fix, and the controller goes on
// serving valid rollouts.
func TestBadInputReportedByConditions(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	startController(t, c, t.TempDir(), ns)
	cs := c.Clientset()
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("rolling", stsOpts{replicas: 1, strategy: "RollingUpdate"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("good", stsOpts{replicas: 3, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, cond, want string
		status           metav1.ConditionStatus
		spec             map[string]any
	}{
		{"rolling-update", "Invalid", "OnDelete", "True", workloadRollout("rolling", nil)},
		{"missing-workload", "WorkloadFound", "does not exist", "False", workloadRollout("nothere", nil)},
		{"unknown-container", "Invalid", "does not have", "True", map[string]any{
			"target":     map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "good"}},
			"containers": []any{map[string]any{"name": "nope", "image": "x:1"}},
		}},
		{"selector-unknown-container", "Invalid", "none of the 3 selected pods", "True", map[string]any{
			"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "good"}}},
			"containers": []any{map[string]any{"name": "nope", "image": "x:1"}},
		}},
	}
	for _, tc := range cases {
		createRollout(t, c, ns, tc.name, tc.spec)
	}
	for _, tc := range cases {
		cluster.Eventually(t, time.Minute, tc.name+" condition", func() error {
			st, err := rolloutStatus(c, ns, tc.name)
			if err != nil {
				return err
			}
			if cd := condition(st, tc.cond); cd == nil || cd.Status != tc.status || !strings.Contains(cd.Message, tc.want) {
				return fmt.Errorf("want %s=%s mentioning %q; conditions: %s", tc.cond, tc.status, tc.want, condSummary(st.Conditions))
			}
			return nil
		})
	}
	// The controller is not stalled: a valid rollout still goes through.
	waitSTSReady(t, c, ns, "good", 3, time.Minute)
	setImage(t, c, ns, "good", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "valid", workloadRollout("good", map[string]any{"maxUnavailable": 1}))
	waitPhase(t, c, ns, "valid", "Succeeded", 2*time.Minute)
}

// TestConflictOlderRolloutWins: two rollouts over the same pods: the
// older drives them, the newer reports Conflict and touches nothing.
func TestConflictOlderRolloutWins(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	startController(t, c, t.TempDir(), ns)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(context.Background(), kwokStatefulSet("web", stsOpts{replicas: 4, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 4, time.Minute)
	createRollout(t, c, ns, "older", map[string]any{
		"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}}},
		"containers": []any{map[string]any{"name": "log", "image": "registry.example/log:v2"}},
	})
	waitPhase(t, c, ns, "older", "Succeeded", time.Minute)
	createRollout(t, c, ns, "newer", map[string]any{
		"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}}},
		"containers": []any{map[string]any{"name": "log", "image": "registry.example/log:v3"}},
	})
	cluster.Eventually(t, time.Minute, "Conflict condition", func() error {
		st, err := rolloutStatus(c, ns, "newer")
		if err != nil {
			return err
		}
		if cd := condition(st, "Conflict"); cd == nil || cd.Status != "True" || !strings.Contains(cd.Message, "older") {
			return fmt.Errorf("conditions: %s", condSummary(st.Conditions))
		}
		return nil
	})
	for name, p := range podsByName(t, c, ns) {
		if !strings.HasSuffix(p.Spec.Containers[1].Image, "log:v2") {
			t.Fatalf("%s: %s, the newer rollout touched a pod of the older", name, p.Spec.Containers[1].Image)
		}
	}
}
