package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/node"
)

// TestHelmInstall installs the chart the way a user does, with the image
// deploy/image builds, on the real node: the controller runs as a pod
// under the chart's own ServiceAccount, in the namespaced mode (a Role in
// the managed namespace, no cluster-wide right on pods), `helm test`
// passes, and the controller rolls a StatefulSet on the real kubelet in
// place. Its journal, left on the node by the volume, replays.
//
// What differs from a production cluster, and why: this control plane
// listens on loopback and runs no kube-proxy and no cluster DNS, so the
// controller (hostNetwork) is pointed at the apiserver by
// KUBERNETES_SERVICE_HOST/PORT and the test pod asks 127.0.0.1; the
// journal's volume is a hostPath PersistentVolume made here, as there is
// no provisioner.
func TestHelmInstall(t *testing.T) {
	c := cluster.Shared(t)
	ctx := context.Background()
	cs := c.Clientset()
	helm, err := cluster.Helm(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// The image, built and imported as a user's registry would serve it.
	const ref = "rollbook.local/rollbook:e2e"
	tarball := filepath.Join(dir, "rollbook.tar")
	build := exec.CommandContext(ctx, "go", "run", "./deploy/image", "-o", tarball, "-tag", ref)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go run ./deploy/image: %v\n%s", err, out)
	}
	if err := realNode.ImportImage(ctx, tarball, ref); err != nil {
		t.Fatal(err)
	}

	system, shop := c.Namespace(t), c.Namespace(t)
	journalDir := journalVolume(t, c, system, "journal-rb-rollbook-0")
	api, err := url.Parse(c.Server)
	if err != nil {
		t.Fatal(err)
	}
	metricsPort := freePort(t)
	values := map[string]any{
		"replicaCount": 1,
		"image":        map[string]any{"repository": "rollbook.local/rollbook", "tag": "e2e", "pullPolicy": "Never"},
		"namespaces":   []string{shop},
		"hostNetwork":  true,
		"nodeSelector": map[string]string{corev1.LabelHostname: realNode.Name},
		"metrics":      map[string]any{"port": metricsPort},
		"journal":      map[string]any{"size": "1Gi"},
		"resources":    map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "64Mi"}, "limits": map[string]any{"memory": "512Mi"}},
		"extraEnv": []map[string]string{
			{"name": "KUBERNETES_SERVICE_HOST", "value": api.Hostname()},
			{"name": "KUBERNETES_SERVICE_PORT", "value": api.Port()},
		},
		"tests": map[string]any{"url": fmt.Sprintf("http://127.0.0.1:%d/readyz", metricsPort)},
	}
	vb, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(valuesFile, vb, 0o644); err != nil {
		t.Fatal(err)
	}
	runHelm := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, helm, append(args, "--kubeconfig", c.Kubeconfig, "--namespace", system)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(dir, "helm"), "HELM_CONFIG_HOME="+filepath.Join(dir, "helm"), "HELM_DATA_HOME="+filepath.Join(dir, "helm"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, out, controllerLogs(t, c, system))
		}
		return string(out)
	}
	runHelm("install", "rb", filepath.Join(root, "deploy", "chart"), "--values", valuesFile, "--wait", "--timeout", "4m")
	uninstalled := false
	uninstall := func() {
		if !uninstalled {
			uninstalled = true
			runHelm("uninstall", "rb", "--wait", "--timeout", "2m")
		}
	}
	t.Cleanup(uninstall)

	pods, err := cs.CoreV1().Pods(system).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("controller pods: %v (%d)", err, len(pods.Items))
	}
	if p := pods.Items[0]; p.Spec.ServiceAccountName != "rb-rollbook" || p.Spec.NodeName != realNode.Name || p.Spec.Containers[0].Image != ref {
		t.Fatalf("controller pod runs as %q on %q from %q, want rb-rollbook on the real node from %s", p.Spec.ServiceAccountName, p.Spec.NodeName, p.Spec.Containers[0].Image, ref)
	}
	// Namespaced: the account may patch pods in shop and nowhere else.
	sa := "system:serviceaccount:" + system + ":rb-rollbook"
	for _, tc := range []struct {
		ns   string
		want bool
	}{{shop, true}, {"", false}, {system, false}} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: sa, Groups: []string{"system:serviceaccounts"}, ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: tc.ns}}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tc.want {
			t.Errorf("%s may patch pods in namespace %q: %v, want %v", sa, tc.ns, got.Status.Allowed, tc.want)
		}
	}
	if out := runHelm("test", "rb", "--timeout", "2m"); !strings.Contains(out, "Phase:          Succeeded") {
		t.Errorf("helm test:\n%s", out)
	}

	// A rollout on the real kubelet, driven by the in-cluster controller.
	const replicas = 2
	sts := kwokStatefulSet("web", stsOpts{replicas: replicas, gate: true, image: node.AppV1})
	spec := &sts.Spec.Template.Spec
	spec.NodeSelector = nil
	spec.Containers[1].Image = node.Sidecar
	spec.TerminationGracePeriodSeconds = new(int64)
	realNode.Schedule(spec)
	if _, err := cs.AppsV1().StatefulSets(shop).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, shop, "web", replicas, 2*time.Minute)
	before := podsByName(t, c, shop)
	setImage(t, c, shop, "web", "app", node.AppV2)
	createRollout(t, c, shop, "web-v2", workloadRollout("web", map[string]any{"maxUnavailable": 1, "gracePeriodSeconds": int64(1)}))
	waitPhase(t, c, shop, "web-v2", "Succeeded", 3*time.Minute)
	for name, a := range podsByName(t, c, shop) {
		b := before[name]
		if a.UID != b.UID || a.Spec.Containers[0].Image != node.AppV2 || containerStatus(a, "app").RestartCount != containerStatus(b, "app").RestartCount+1 {
			t.Errorf("%s: not updated in place (uid %s→%s, image %s)", name, b.UID, a.UID, a.Spec.Containers[0].Image)
		}
	}
	uninstall()
	// helm's --wait covers the StatefulSet it made, not the pod the
	// garbage collector deletes after it, nor the process in it: the
	// journal is read once the controller has let go of it.
	cluster.Eventually(t, 2*time.Minute, "the controller gone and its journal unlocked", func() error {
		pods, err := cs.CoreV1().Pods(system).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("controller pod %s still there", pods.Items[0].Name)
		}
		j, err := journal.Open(filepath.Join(journalDir, "journal"), journal.Options{})
		if err != nil {
			return err
		}
		return j.Close()
	})
	checkReplay(t, journalDir)
}

// journalVolume makes a hostPath PersistentVolume bound in advance to the
// claim the StatefulSet will make, in a directory the image's nonroot user
// owns, and returns the directory.
func journalVolume(t *testing.T, c *cluster.Cluster, ns, claim string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "volume")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	hostPath := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-journal"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: claim},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPath}},
		},
	}
	cs := c.Clientset()
	if _, err := cs.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// controllerLogs is the controller pods' state and log tails, for a
// failure message.
func controllerLogs(t *testing.T, c *cluster.Cluster, ns string) string {
	ctx := context.Background()
	pods, err := c.Clientset().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s %v\n", p.Name, p.Status.Phase, p.Status.Conditions)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  %s: %+v\n", cs.Name, cs.State)
		}
		tail := int64(40)
		logs, err := c.Clientset().CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		fmt.Fprintf(&b, "  logs (%v):\n%s\n", err, logs)
	}
	events, _ := c.Clientset().CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if events != nil {
		for _, e := range events.Items {
			fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}
