package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
)

// plugin is the kubectl-rollbook binary, built once for the package's
// tests, as `go install` builds it.
var plugin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kubectl-rollbook-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kubectl-rollbook")
	out, err := exec.Command("go", "build", "-o", bin, "rollbook.dev/rollbook/cmd/kubectl-rollbook").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building kubectl-rollbook: %v\n%s", err, out)
	}
	return bin, nil
})

// kubectlRollbook runs `kubectl rollbook args...` with kubeconfig and
// returns its exit code and output.
func kubectlRollbook(t *testing.T, kubeconfig string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, err := plugin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "ROLLBOOK_CONTROLLER=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl rollbook %v: %v", args, err)
	}
	t.Logf("kubectl rollbook %s → %d\n%s%s", strings.Join(args, " "), code, o.String(), e.String())
	return code, o.String(), e.String()
}

// mustRun runs the plugin and fails the test unless it exits 0.
func mustRun(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	code, out, errOut := kubectlRollbook(t, kubeconfig, args...)
	if code != 0 {
		t.Fatalf("kubectl rollbook %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// writeKubeconfig writes a kubeconfig for a bearer token.
func writeKubeconfig(t *testing.T, c *cluster.Cluster, token, ns string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user", Namespace: ns}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveJournalAPI serves the controller's HTTP endpoints (journal API
// included) on a loopback port, as `rollbook run` does on --metrics-addr.
func serveJournalAPI(t *testing.T, r *running) string {
	t.Helper()
	srv := &metricsServer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv.lead(ctx, r.c)
	hs := httptest.NewServer(srv.mux())
	t.Cleanup(func() { hs.Close(); cancel() })
	return hs.URL
}

// TestKubectlPlugin drives every verb of the kubectl plugin, as a user
// would from their shell, against a controller on the test cluster: a
// step pause approved, `status` waiting to the end (and not returning on
// the previous Succeeded right after a template change), pause and resume,
// abort releasing every gate mid-rollout, undo mid-rollout back to the
// previous ControllerRevision, `status` exiting 1 on a failed rollout,
// and the journal verbs reading the live journal through the controller's
// API, which refuses a caller without the RBAC to read it.
func TestKubectlPlugin(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	api := serveJournalAPI(t, r)
	admin := writeKubeconfig(t, c, c.Config().BearerToken, "default")
	cs := c.Clientset()

	// The CLI's conventions.
	if code, out, _ := kubectlRollbook(t, admin, "--help"); code != 0 || !strings.Contains(out, "approve") {
		t.Fatalf("--help: exit %d", code)
	}
	if code, out, _ := kubectlRollbook(t, admin, "version"); code != 0 || !strings.HasPrefix(out, "kubectl-rollbook ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	if code, _, _ := kubectlRollbook(t, admin, "status", "--help"); code != 0 {
		t.Fatalf("status --help: exit %d", code)
	}
	if code, _, errOut := kubectlRollbook(t, admin, "get", "-n", ns, "-o", "xml"); code != 1 || !strings.Contains(errOut, "use json or yaml") {
		t.Fatalf("get -o xml: exit %d, %q", code, errOut)
	}

	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 4, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 4, 2*time.Minute)
	images := func() map[string]int {
		out := map[string]int{}
		for _, p := range podsByName(t, c, ns) {
			out[p.Spec.Containers[0].Image]++
		}
		return out
	}

	// A step pause, approved; flags after the rollout's name count.
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{
		"maxUnavailable": 1, "steps": []any{map[string]any{"percent": 50, "pause": map[string]any{}}, map[string]any{"percent": 100}},
	}))
	waitPhase(t, c, ns, "web", "Paused", 2*time.Minute)
	if out := mustRun(t, admin, "status", "web", "-n", ns, "--watch=false"); !strings.Contains(out, "kubectl rollbook approve web") {
		t.Fatalf("status of a step pause does not say how to go on: %q", out)
	}
	if code, _, errOut := kubectlRollbook(t, admin, "resume", "web", "-n", ns); code != 1 || !strings.Contains(errOut, "approve") {
		t.Fatalf("resume of a step pause: exit %d, %q", code, errOut)
	}
	mustRun(t, admin, "approve", "web", "-n", ns)
	if out := mustRun(t, admin, "status", "-n", ns, "web", "--timeout", "2m"); !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("status: %q", out)
	}
	if got := images(); got["registry.example/app:v2"] != 4 {
		t.Fatalf("status returned with pods on %v", got)
	}
	if code, _, errOut := kubectlRollbook(t, admin, "approve", "web", "-n", ns); code != 1 || !strings.Contains(errOut, "not waiting for an approval") {
		t.Fatalf("approve of a finished rollout: exit %d, %q", code, errOut)
	}

	patchRollout(t, c, ns, "web", `{"spec":{"strategy":{"steps":null}}}`)

	// get: the table and -o json, whose status names the workload revision
	// it covers and is Ready.
	if out := mustRun(t, admin, "get", "-n", ns); !strings.Contains(out, "web") || !strings.Contains(out, "Succeeded") {
		t.Fatalf("get: %q", out)
	}
	var obj struct {
		Status struct {
			WorkloadRevision string             `json:"workloadRevision"`
			Conditions       []metav1.Condition `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, admin, "get", "web", "-n", ns, "-o", "json")), &obj); err != nil {
		t.Fatal(err)
	}
	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Status.WorkloadRevision != sts.Status.UpdateRevision || !hasCondition(obj.Status.Conditions, "Ready", "True") {
		t.Fatalf("status covers %q (StatefulSet at %s), conditions %v", obj.Status.WorkloadRevision, sts.Status.UpdateRevision, obj.Status.Conditions)
	}

	// Right after a template change the status still says Succeeded, for
	// the old template: status waits for the new one's rollout.
	setImage(t, c, ns, "web", "app", "registry.example/app:v3")
	if out := mustRun(t, admin, "status", "web", "-n", ns, "--timeout", "2m"); !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("status: %q", out)
	}
	if got := images(); got["registry.example/app:v3"] != 4 {
		t.Fatalf("status returned on the previous Succeeded: pods on %v", got)
	}

	// pause and resume.
	mustRun(t, admin, "pause", "web", "-n", ns)
	st := waitPhase(t, c, ns, "web", "Paused", time.Minute)
	if c := condition(st, "Paused"); c == nil || c.Reason != "SpecPaused" {
		t.Fatalf("paused: %v", condSummary(st.Conditions))
	}
	mustRun(t, admin, "resume", "web", "-n", ns)
	waitPhase(t, c, ns, "web", "Succeeded", time.Minute)

	// abort mid-rollout: gated pods are released at once, not after the
	// grace period, and status exits 1.
	patchRollout(t, c, ns, "web", `{"spec":{"strategy":{"gracePeriodSeconds":600,"maxUnavailable":2}}}`)
	setImage(t, c, ns, "web", "app", "registry.example/app:v4")
	cluster.Eventually(t, time.Minute, "pods gated by the rollout", func() error {
		if n := gatedPods(t, c, ns); n != 2 {
			return fmt.Errorf("%d pods gated", n)
		}
		return nil
	})
	mustRun(t, admin, "abort", "web", "-n", ns)
	cluster.Eventually(t, time.Minute, "every gate released", func() error {
		if n := gatedPods(t, c, ns); n != 0 {
			return fmt.Errorf("%d pods still gated", n)
		}
		return nil
	})
	st = waitPhase(t, c, ns, "web", "Failed", time.Minute)
	if c := condition(st, "Aborted"); c == nil || c.Status != "True" {
		t.Fatalf("aborted: %v", condSummary(st.Conditions))
	}
	if code, _, errOut := kubectlRollbook(t, admin, "status", "web", "-n", ns); code != 1 || !strings.Contains(errOut, "abort") {
		t.Fatalf("status of an aborted rollout: exit %d, %q", code, errOut)
	}

	// undo mid-rollout: resumed to a step pause at 50%, two pods run v4;
	// undo sets the StatefulSet back to the previous revision (v3) and
	// Rollbook rolls those two back in place.
	patchRollout(t, c, ns, "web", `{"spec":{"strategy":{"gracePeriodSeconds":0,"maxUnavailable":1,"steps":[{"percent":50,"pause":{}},{"percent":100}]}}}`)
	mustRun(t, admin, "resume", "web", "-n", ns)
	cluster.Eventually(t, 2*time.Minute, "half the pods on v4, paused", func() error {
		st, err := rolloutStatus(c, ns, "web")
		if err != nil {
			return err
		}
		if got := images(); st.Phase != "Paused" || got["registry.example/app:v4"] != 2 {
			return fmt.Errorf("phase %s, pods on %v", st.Phase, got)
		}
		return nil
	})
	if out := mustRun(t, admin, "undo", "web", "-n", ns); !strings.Contains(out, "rolled back to revision") {
		t.Fatalf("undo: %q", out)
	}
	patchRollout(t, c, ns, "web", `{"spec":{"strategy":{"steps":null}}}`)
	mustRun(t, admin, "status", "web", "-n", ns, "--timeout", "2m")
	if got := images(); got["registry.example/app:v3"] != 4 {
		t.Fatalf("after undo: pods on %v", got)
	}

	// A failed rollout: status exits 1 and says why.
	patchRollout(t, c, ns, "web", `{"spec":{"strategy":{"verifyTimeoutSeconds":3}}}`)
	setImage(t, c, ns, "web", "app", "registry.example/app:v5-pullfail")
	if code, _, errOut := kubectlRollbook(t, admin, "status", "web", "-n", ns, "--timeout", "2m"); code != 1 || !strings.Contains(errOut, "ImagePull") {
		t.Fatalf("status of a failing rollout: exit %d, %q", code, errOut)
	}

	// undo of a selector rollout: its previous spec.containers, from the
	// journal the controller serves.
	createBarePods(t, c, ns, "worker-%d", 2, map[string]string{"team": "blue"})
	logImage := func(img string) map[string]any {
		return map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "log", "image": img}}}}
	}
	createRollout(t, c, ns, "logs", map[string]any{
		"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"team": "blue"}}},
		"containers": logImage("registry.example/log:v2")["spec"].(map[string]any)["containers"],
	})
	mustRun(t, admin, "status", "logs", "-n", ns, "--timeout", "2m")
	b, _ := json.Marshal(logImage("registry.example/log:v3"))
	patchRollout(t, c, ns, "logs", string(b))
	mustRun(t, admin, "status", "logs", "-n", ns, "--timeout", "2m")
	if code, _, errOut := kubectlRollbook(t, admin, "undo", "logs", "-n", ns); code != 1 || !strings.Contains(errOut, "--controller") {
		t.Fatalf("undo of a selector rollout without the journal: exit %d, %q", code, errOut)
	}
	if out := mustRun(t, admin, "undo", "logs", "-n", ns, "--controller", api); !strings.Contains(out, "log:v2") {
		t.Fatalf("undo logs: %q", out)
	}
	mustRun(t, admin, "status", "logs", "-n", ns, "--timeout", "2m")
	for _, name := range []string{"worker-0", "worker-1"} {
		if img := podsByName(t, c, ns)[name].Spec.Containers[1].Image; img != "registry.example/log:v2" {
			t.Fatalf("%s runs %s after undo", name, img)
		}
	}

	// The journal verbs read the live journal through the controller.
	hist := mustRun(t, admin, "history", "web", "-n", ns, "--controller", api)
	if !strings.Contains(hist, "pod "+ns+"/web-0") || !strings.Contains(hist, "patched") || !strings.Contains(hist, "app:v4->registry.example/app:v3") {
		t.Fatalf("history: %q", hist)
	}
	// One entry per pod and revision: 4 pods through v2, v3, v4 (two of
	// them, then undone), v5.
	var h struct{ Pods []struct{ Pod string } }
	if err := json.Unmarshal([]byte(mustRun(t, admin, "history", "web", "--controller", api, "-n", ns, "-o", "json")), &h); err != nil || len(h.Pods) < 10 || h.Pods[len(h.Pods)-1].Pod == "" {
		t.Fatalf("history -o json: %v, %+v", err, h)
	}
	var spans []struct{ Name string }
	if err := json.Unmarshal([]byte(mustRun(t, admin, "trace", "web", "-n", ns, "--controller", api, "-o", "json")), &spans); err != nil || len(spans) == 0 {
		t.Fatalf("trace -o json: %v, %d spans", err, len(spans))
	}
	if out := mustRun(t, admin, "trace", "web", "-n", ns, "--controller", api); !strings.Contains(out, "web-0") {
		t.Fatalf("trace: %q", out)
	}
	page := filepath.Join(t.TempDir(), "web.html")
	mustRun(t, admin, "report", "web", "-n", ns, "--controller", api, "--out", page)
	if b, err := os.ReadFile(page); err != nil || !bytes.Contains(b, []byte("<html")) || !bytes.Contains(b, []byte(ns+"/web")) {
		t.Fatalf("report: %v, %d bytes", err, len(b))
	}
	manifest := filepath.Join(t.TempDir(), "next.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: rollbook.dev/v1alpha1\nkind: InPlaceRollout\nmetadata: {name: next}\nspec:\n  target: {selector: {matchLabels: {team: blue}}}\n  containers: [{name: log, image: registry.example/log:v9}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, admin, "plan", "-f", manifest, "-n", ns); !strings.Contains(out, "dry run of "+ns+"/next") || !strings.Contains(out, "worker-0") {
		t.Fatalf("plan -f: %q", out)
	}
	if out := mustRun(t, admin, "get", "-A", "--context", "test"); !strings.Contains(out, ns) || !strings.Contains(out, "logs") {
		t.Fatalf("get -A: %q", out)
	}
	if out := mustRun(t, admin, "plan", "web", "-n", ns); !strings.Contains(out, "dry run of "+ns+"/web") {
		t.Fatalf("plan: %q", out)
	}
	if out := mustRun(t, admin, "plan", "web", "-n", ns, "--controller", api, "-o", "yaml"); !strings.Contains(out, "rollout: "+ns+"/web") {
		t.Fatalf("plan -o yaml over the journal: %q", out)
	}

	// The journal API refuses a caller without "get inplacerollouts/journal",
	// and serves them once a ClusterRoleBinding grants it.
	saCfg, err := c.ServiceAccountConfig(ctx, ns, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	auditor := writeKubeconfig(t, c, saCfg.BearerToken, ns)
	code, _, errOut := kubectlRollbook(t, auditor, "history", "web", "--controller", api)
	if code != 1 || !strings.Contains(errOut, "403") || !strings.Contains(errOut, "may not read the journal") {
		t.Fatalf("history as an auditor without RBAC: exit %d, %q", code, errOut)
	}
	crb := fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"journal-reader-%s"},
		"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"rollbook-journal-reader"},
		"subjects":[{"kind":"ServiceAccount","name":"auditor","namespace":%q}]}`, ns, ns)
	if _, err := deploy.Apply(ctx, c.Config(), []byte(crb), deploy.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 30*time.Second, "the auditor reads the journal", func() error {
		if code, _, errOut := kubectlRollbook(t, auditor, "history", "web", "--controller", api); code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		return nil
	})
	// A token the apiserver does not know is refused as unauthenticated.
	stranger := writeKubeconfig(t, c, "not-a-token", ns)
	if code, _, errOut := kubectlRollbook(t, stranger, "history", "web", "--controller", api); code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("history with a bad token: exit %d, %q", code, errOut)
	}
}

func hasCondition(cs []metav1.Condition, typ, status string) bool {
	for _, c := range cs {
		if c.Type == typ && string(c.Status) == status {
			return true
		}
	}
	return false
}

// gatedPods counts the namespace's pods whose rollbook gate is False.
func gatedPods(t *testing.T, c *cluster.Cluster, ns string) int {
	t.Helper()
	n := 0
	for _, p := range podsByName(t, c, ns) {
		for _, cd := range p.Status.Conditions {
			if string(cd.Type) == planner.GateCondition && cd.Status == corev1.ConditionFalse {
				n++
			}
		}
	}
	return n
}

func patchRollout(t *testing.T, c *cluster.Cluster, ns, name, patch string) {
	t.Helper()
	if _, err := dynamic.NewForConfigOrDie(c.Config()).Resource(deploy.InPlaceRollouts).Namespace(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patching rollout %s: %v", name, err)
	}
}

// TestKubectlPluginDaemonSet: status and undo of a DaemonSet rollout. A
// DaemonSet's status names no update revision: status waits on the
// generation the rollout's status covers, and undo takes the DaemonSet
// back to its revision before the newest, which Rollbook rolls in place.
func TestKubectlPluginDaemonSet(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	startController(t, c, t.TempDir(), ns)
	admin := writeKubeconfig(t, c, c.Config().BearerToken, ns)
	cs := c.Clientset()
	ds := daemonSet("agent", kwokStatefulSet("agent", stsOpts{gate: true}).Spec.Template)
	if _, err := cs.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 2*time.Minute, "DaemonSet ready", func() error {
		d, err := cs.AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.DesiredNumberScheduled != kwokNodes || d.Status.NumberReady != kwokNodes {
			return fmt.Errorf("desired %d ready %d", d.Status.DesiredNumberScheduled, d.Status.NumberReady)
		}
		return nil
	})
	logImages := func() map[string]int {
		out := map[string]int{}
		for _, p := range podsByName(t, c, ns) {
			out[p.Spec.Containers[1].Image]++
		}
		return out
	}
	setLog := func(image string) {
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"log","image":%q}]}}}}`, image)
		if _, err := cs.AppsV1().DaemonSets(ns).Patch(ctx, "agent", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setLog("registry.example/log:v2")
	createRollout(t, c, ns, "agent", map[string]any{
		"target":   map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"}},
		"strategy": map[string]any{"maxUnavailable": "50%"},
	})
	mustRun(t, admin, "status", "agent", "--timeout", "2m")
	if got := logImages(); got["registry.example/log:v2"] != kwokNodes {
		t.Fatalf("status returned with pods on %v", got)
	}
	if out := mustRun(t, admin, "undo", "agent"); !strings.Contains(out, "rolled back to revision 1") {
		t.Fatalf("undo: %q", out)
	}
	mustRun(t, admin, "status", "agent", "--timeout", "2m")
	if got := logImages(); got["registry.example/log:v1"] != kwokNodes {
		t.Fatalf("after undo: pods on %v", got)
	}
}
