package node

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
)

// shared is the node every test uses unless it needs its own.
var shared *Node

// timings collects what the tests measured, printed after the last test.
var timings struct {
	sync.Mutex
	lines []string
}

func record(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	timings.Lock()
	timings.lines = append(timings.lines, t.Name()+": "+line)
	timings.Unlock()
}

func TestMain(m *testing.M) {
	cluster.MainWith(m, func(ctx context.Context, c *cluster.Cluster) (func(), error) {
		n, err := Start(ctx, c, Options{Progress: os.Stderr})
		if err != nil {
			return nil, err
		}
		shared = n
		return func() {
			start := time.Now()
			if err := n.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "stopping node %s: %v\n", n.Name, err)
			}
			fmt.Fprintf(os.Stderr, "node timings: %s; stop %s\n", n.Timings, time.Since(start).Round(time.Millisecond))
			for _, l := range timings.lines {
				fmt.Fprintln(os.Stderr, "  "+l)
			}
		}, nil
	})
}

const (
	gate        = corev1.PodConditionType("rollbook.dev/InPlaceUpdateReady")
	waitPod     = 60 * time.Second
	waitRestart = 60 * time.Second
)

// namespace is cluster.Namespace plus, when the test fails, the tails of
// the shared node's containerd and kubelet logs.
func namespace(t *testing.T) string {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", shared.LogTails(40))
		}
	})
	return cluster.Shared(t).Namespace(t)
}

func clientset(t *testing.T) kubernetes.Interface {
	return cluster.Shared(t).Clientset()
}

// twoContainerPod is app v1 plus a sidecar, on node n.
func twoContainerPod(n *Node, name string) *corev1.Pod {
	grace := int64(5)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{
				{Name: "app", Image: AppV1, Ports: []corev1.ContainerPort{{ContainerPort: AppPort}}},
				{Name: "sidecar", Image: Sidecar},
			},
		},
	}
	n.Schedule(&p.Spec)
	return p
}

func createPod(t *testing.T, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	p, err := clientset(t).CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	return p
}

func getPod(t *testing.T, ns, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return clientset(t).CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

func condition(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isTrue(p *corev1.Pod, typ corev1.PodConditionType) bool {
	c := condition(p, typ)
	return c != nil && c.Status == corev1.ConditionTrue
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// describe summarises a pod's status for failure messages.
func describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s ip=%s", p.Status.Phase, p.Status.PodIP)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
		if c.Reason != "" {
			fmt.Fprintf(&b, "(%s)", c.Reason)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		state := "?"
		switch {
		case cs.State.Running != nil:
			state = "running"
		case cs.State.Waiting != nil:
			state = "waiting:" + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			state = "terminated:" + cs.State.Terminated.Reason
		}
		fmt.Fprintf(&b, " [%s %s ready=%t restarts=%d image=%s imageID=%s id=%s]",
			cs.Name, state, cs.Ready, cs.RestartCount, cs.Image, cs.ImageID, cs.ContainerID)
	}
	return b.String()
}

// waitReady waits until the pod is Ready and returns it.
func waitReady(t *testing.T, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	cluster.Eventually(t, timeout, "pod "+name+" Ready", func() error {
		p, err := getPod(t, ns, name)
		if err != nil {
			return err
		}
		pod = p
		if !isTrue(p, corev1.PodReady) {
			return errors.New(describe(p))
		}
		return nil
	})
	return pod
}

// version asks the app in the pod which version it serves, over the pod
// network from the host, as a client in the cluster would.
func version(ip string) (string, error) {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://%s:%d/version", ip, AppPort))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: %s", resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

func TestNodeIsReadyAndReportsItsRuntime(t *testing.T) {
	n := shared
	node, err := clientset(t).CoreV1().Nodes().Get(context.Background(), n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node: %v", err)
	}
	if err := nodeReady(context.Background(), clientset(t), n.Name); err != nil {
		t.Fatal(err)
	}
	if node.Labels[NodeLabel] != "true" || node.Labels[corev1.LabelHostname] != n.Name {
		t.Errorf("labels = %v, want %s=true and hostname %s", node.Labels, NodeLabel, n.Name)
	}
	info := node.Status.NodeInfo
	// The kubelet reports whatever version its build stamped (a plain `go
	// build` of k8s.io/kubernetes stamps none: v0.0.0-master+$Format:%H$);
	// containerd's `go install` stamps its module version.
	t.Logf("kubelet version %s, runtime %s, kernel %s, OS image %s", info.KubeletVersion, info.ContainerRuntimeVersion, info.KernelVersion, info.OSImage)
	if info.KubeletVersion == "" {
		t.Errorf("no kubelet version reported")
	}
	if want := "containerd://" + strings.TrimPrefix(cluster.ContainerdVersion, "v"); !strings.HasPrefix(info.ContainerRuntimeVersion, want) {
		t.Errorf("runtime = %s, want %s", info.ContainerRuntimeVersion, want)
	}
	if n.NodeIP != "" {
		found := false
		for _, a := range node.Status.Addresses {
			found = found || (a.Type == corev1.NodeInternalIP && a.Address == n.NodeIP)
		}
		if !found {
			t.Errorf("addresses = %v, want InternalIP %s", node.Status.Addresses, n.NodeIP)
		}
	}
	// The images are there under their tags and digest names.
	for _, ref := range []string{AppV1, AppV2, Sidecar, Pause} {
		if !strings.HasPrefix(n.Images[ref], strings.Split(ref, ":")[0]+"@sha256:") {
			t.Errorf("image %s has digest name %q", ref, n.Images[ref])
		}
	}
	if n.Images[AppV1] == n.Images[AppV2] {
		t.Errorf("app v1 and v2 have the same digest %s", n.Images[AppV1])
	}
	record(t, "node Ready %s after the kubelet started (%s)", n.Timings.NodeReady.Round(time.Millisecond), n.Timings)
}

func TestTwoContainerPodRunsAndBecomesReady(t *testing.T) {
	n := shared
	ns := namespace(t)
	start := time.Now()
	createPod(t, ns, twoContainerPod(n, "web-0"))
	p := waitReady(t, ns, "web-0", waitPod)
	record(t, "two-container pod Ready %s after create", time.Since(start).Round(time.Millisecond))

	if p.Spec.NodeName != n.Name {
		t.Errorf("scheduled to %q, want %q", p.Spec.NodeName, n.Name)
	}
	if p.Status.PodIP == "" {
		t.Fatalf("no pod IP: %s", describe(p))
	}
	for _, want := range []struct{ name, image string }{{"app", AppV1}, {"sidecar", Sidecar}} {
		cs := containerStatus(p, want.name)
		if cs == nil || cs.State.Running == nil || !cs.Ready || cs.RestartCount != 0 {
			t.Fatalf("container %s not running and ready: %s", want.name, describe(p))
		}
		// The imageID is a registry-style digest name, as after a pull.
		if cs.ImageID != n.Images[want.image] {
			t.Errorf("%s imageID = %s, want %s", want.name, cs.ImageID, n.Images[want.image])
		}
		if !strings.HasPrefix(cs.ContainerID, "containerd://") {
			t.Errorf("%s containerID = %s", want.name, cs.ContainerID)
		}
	}
	cluster.Eventually(t, 10*time.Second, "app serving v1 on the pod IP", func() error {
		v, err := version(p.Status.PodIP)
		if err == nil && v != "v1" {
			return fmt.Errorf("serves %q", v)
		}
		return err
	})
}

func TestImagePatchRestartsOnlyThatContainer(t *testing.T) {
	n, c := shared, cluster.Shared(t)
	ns := namespace(t)
	createPod(t, ns, twoContainerPod(n, "web-0"))
	before := waitReady(t, ns, "web-0", waitPod)
	app0, side0 := *containerStatus(before, "app"), *containerStatus(before, "sidecar")

	// The in-place update Rollbook makes: one JSON patch, with a test
	// precondition on the old image.
	patch, _ := json.Marshal([]map[string]any{
		{"op": "test", "path": "/spec/containers/0/image", "value": AppV1},
		{"op": "replace", "path": "/spec/containers/0/image", "value": AppV2},
	})
	start := time.Now()
	if _, err := c.Clientset().CoreV1().Pods(ns).Patch(context.Background(), "web-0", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patching the image: %v", err)
	}
	var restarted, ready time.Duration
	var after *corev1.Pod
	cluster.Eventually(t, waitRestart, "app restarted on v2 and the pod Ready again", func() error {
		p, err := getPod(t, ns, "web-0")
		if err != nil {
			return err
		}
		app := containerStatus(p, "app")
		if app == nil || app.ImageID != n.Images[AppV2] || app.State.Running == nil {
			return errors.New(describe(p))
		}
		if restarted == 0 {
			restarted = time.Since(start)
		}
		if !app.Ready || !isTrue(p, corev1.PodReady) {
			return errors.New(describe(p))
		}
		ready = time.Since(start)
		after = p
		return nil
	})
	record(t, "in-place restart: app running v2 %s after the patch, pod Ready %s after", restarted.Round(time.Millisecond), ready.Round(time.Millisecond))

	app, side := containerStatus(after, "app"), containerStatus(after, "sidecar")
	if app.ContainerID == app0.ContainerID {
		t.Errorf("app containerID unchanged: %s", app.ContainerID)
	}
	if app.ImageID == app0.ImageID {
		t.Errorf("app imageID unchanged: %s", app.ImageID)
	}
	if app0.RestartCount != 0 || app.RestartCount != 1 {
		t.Errorf("app restartCount %d -> %d, want 0 -> 1", app0.RestartCount, app.RestartCount)
	}
	if app.Image != AppV2 {
		t.Errorf("app status image = %s, want %s", app.Image, AppV2)
	}
	// The old container was stopped gracefully: its TERM trap exited 0.
	if term := app.LastTerminationState.Terminated; term == nil || term.ContainerID != app0.ContainerID || term.ExitCode != 0 {
		t.Errorf("app lastState = %+v, want the old container terminated with exit code 0", app.LastTerminationState)
	}
	if side.ContainerID != side0.ContainerID || side.RestartCount != 0 || !side.Ready {
		t.Errorf("sidecar changed: before %s (restarts %d), after %s (restarts %d, ready %t)",
			side0.ContainerID, side0.RestartCount, side.ContainerID, side.RestartCount, side.Ready)
	}
	if after.Status.PodIP != before.Status.PodIP || after.UID != before.UID {
		t.Errorf("pod identity changed: IP %s -> %s, UID %s -> %s", before.Status.PodIP, after.Status.PodIP, before.UID, after.UID)
	}
	cluster.Eventually(t, 10*time.Second, "app serving v2 on the same pod IP", func() error {
		v, err := version(after.Status.PodIP)
		if err == nil && v != "v2" {
			return fmt.Errorf("serves %q", v)
		}
		return err
	})
}

// setGate writes the readiness gate's condition through pods/status, as
// Rollbook does: a strategic merge patch keyed on the condition type, so
// the kubelet's own conditions are left alone.
func setGate(t *testing.T, ns, name string, status corev1.ConditionStatus) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{
		"status": map[string]any{
			"conditions": []map[string]any{{
				"type":               gate,
				"status":             status,
				"reason":             "Test",
				"lastTransitionTime": metav1.Now(),
			}},
		},
	})
	_, err := clientset(t).CoreV1().Pods(ns).Patch(context.Background(), name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("setting %s=%s: %v", gate, status, err)
	}
}

// waitPodReady waits until the pod's Ready condition is want, checking
// that the containers stay ready throughout: only the gate moves.
func waitPodReady(t *testing.T, ns, name string, want corev1.ConditionStatus, reason string) time.Duration {
	t.Helper()
	start := time.Now()
	cluster.Eventually(t, 30*time.Second, fmt.Sprintf("pod Ready=%s", want), func() error {
		p, err := getPod(t, ns, name)
		if err != nil {
			return err
		}
		if !isTrue(p, corev1.ContainersReady) {
			return fmt.Errorf("containers not ready: %s", describe(p))
		}
		r := condition(p, corev1.PodReady)
		if r == nil || r.Status != want || (reason != "" && r.Reason != reason) {
			return errors.New(describe(p))
		}
		return nil
	})
	return time.Since(start)
}

func TestReadinessGateHoldsPodNotReadyUntilSet(t *testing.T) {
	n := shared
	ns := namespace(t)
	p := twoContainerPod(n, "gated-0")
	p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate}}
	createPod(t, ns, p)

	// Containers running and ready, but the pod is not: the kubelet says
	// why.
	waitPodReady(t, ns, "gated-0", corev1.ConditionFalse, "ReadinessGatesNotReady")
	if got, _ := getPod(t, ns, "gated-0"); condition(got, gate) != nil {
		t.Fatalf("nobody set %s, yet: %s", gate, describe(got))
	}

	setGate(t, ns, "gated-0", corev1.ConditionTrue)
	d := waitPodReady(t, ns, "gated-0", corev1.ConditionTrue, "")
	record(t, "gate True -> pod Ready in %s", d.Round(time.Millisecond))

	setGate(t, ns, "gated-0", corev1.ConditionFalse)
	d = waitPodReady(t, ns, "gated-0", corev1.ConditionFalse, "ReadinessGatesNotReady")
	record(t, "gate False -> pod NotReady in %s", d.Round(time.Millisecond))

	setGate(t, ns, "gated-0", corev1.ConditionTrue)
	d = waitPodReady(t, ns, "gated-0", corev1.ConditionTrue, "")
	record(t, "gate True again -> pod Ready in %s", d.Round(time.Millisecond))

	// Gating never restarted anything.
	got, _ := getPod(t, ns, "gated-0")
	for _, cs := range got.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("container %s restarted: %s", cs.Name, describe(got))
		}
	}
}

func TestMissingImageWaitsInErrImageNeverPull(t *testing.T) {
	n := shared
	ns := namespace(t)
	p := twoContainerPod(n, "missing-0")
	p.Spec.Containers[0].Image = Missing
	createPod(t, ns, p)

	cluster.Eventually(t, waitPod, "app waiting in ErrImageNeverPull", func() error {
		got, err := getPod(t, ns, "missing-0")
		if err != nil {
			return err
		}
		app, side := containerStatus(got, "app"), containerStatus(got, "sidecar")
		if app == nil || app.State.Waiting == nil || app.State.Waiting.Reason != "ErrImageNeverPull" {
			return errors.New(describe(got))
		}
		// The rest of the pod did start: only the missing image waits.
		if side == nil || side.State.Running == nil {
			return errors.New(describe(got))
		}
		if isTrue(got, corev1.PodReady) || isTrue(got, corev1.ContainersReady) {
			return fmt.Errorf("pod Ready with a container that never started: %s", describe(got))
		}
		if got.Status.Phase != corev1.PodPending {
			return fmt.Errorf("phase %s, want Pending", got.Status.Phase)
		}
		return nil
	})
}

func TestContainerdBuiltWithoutCgoSnapshotters(t *testing.T) {
	// The build tags must reach the compiler through GoInstall's GOFLAGS:
	// without them the cgo-only snapshotters fail the CGO_ENABLED=0 build
	// or, worse, get compiled in some other way.
	info, err := buildinfo.ReadFile(shared.bins.containerd)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["-tags"] != "no_btrfs,no_devmapper,no_zfs" || settings["CGO_ENABLED"] != "0" {
		t.Errorf("containerd built with -tags=%q CGO_ENABLED=%q", settings["-tags"], settings["CGO_ENABLED"])
	}
	if info.Main.Version != cluster.ContainerdVersion {
		t.Errorf("containerd module version %s, want %s", info.Main.Version, cluster.ContainerdVersion)
	}
}

func TestMissingPackageIsNamed(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		pkg     string
		mention string
	}{
		{"runc", Options{Runc: "/nonexistent/runc"}, "runc", "/nonexistent/runc"},
		{"cni", Options{CNIBinDir: t.TempDir()}, "containernetworking-plugins", "bridge"},
		{"iptables", Options{Iptables: "/nonexistent/iptables"}, "iptables", "/nonexistent/iptables"},
		{"conntrack", Options{Conntrack: "/nonexistent/conntrack"}, "conntrack", "/nonexistent/conntrack"},
		{"busybox missing", Options{Busybox: "/nonexistent/busybox"}, "busybox-static", "/nonexistent/busybox"},
		// A dynamically linked binary where the static busybox should be.
		{"busybox dynamic", Options{Busybox: "/usr/bin/env"}, "busybox-static", "dynamically linked"},
	}
	dirs := func() []string {
		d, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
		return d
	}
	before := len(dirs())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), cluster.Shared(t), tc.opts)
			if err == nil {
				t.Fatal("Start succeeded without a prerequisite")
			}
			msg := err.Error()
			if !errors.Is(err, ErrMissingPrerequisite) || !strings.HasPrefix(msg, "node: ") ||
				!strings.Contains(msg, tc.pkg) || !strings.Contains(msg, tc.mention) ||
				!strings.Contains(msg, "apt-get install -y runc containernetworking-plugins iptables conntrack busybox-static") {
				t.Errorf("error does not name %s (%s) with the install command: %v", tc.pkg, tc.mention, err)
			}
		})
	}
	if after := len(dirs()); after != before {
		t.Errorf("a failed prerequisite check left node directories: %d -> %d", before, after)
	}
}

func TestKubeletThatCannotStartIsReported(t *testing.T) {
	c := cluster.Shared(t)
	t.Run("no binary", func(t *testing.T) {
		_, err := Start(context.Background(), c, Options{Kubelet: "/nonexistent/kubelet"})
		if err == nil || !strings.Contains(err.Error(), "no kubelet binary") {
			t.Fatalf("err = %v, want one naming the missing kubelet binary", err)
		}
	})
	t.Run("exits at once", func(t *testing.T) {
		start := time.Now()
		n, err := Start(context.Background(), c, Options{KubeletArgs: []string{"--no-such-flag-for-rollbook"}})
		if err == nil {
			n.Stop()
			t.Fatal("Start succeeded with a kubelet that cannot start")
		}
		msg := err.Error()
		t.Logf("the error a user sees:\n%v", err)
		// Which component, what happened, and its own words from its log.
		for _, want := range []string{"node: ", "kubelet exited before", "tail of", "no-such-flag-for-rollbook"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		record(t, "failed start reported and cleaned up in %s", time.Since(start).Round(time.Millisecond))
		// The failed Start removed what it made; the shared node is intact.
		if n == nil {
			t.Fatal("Start returned no node to inspect")
		}
		assertGone(t, n)
		if err := nodeReady(context.Background(), clientset(t), shared.Name); err != nil {
			t.Errorf("the shared node suffered: %v", err)
		}
	})
}

// assertGone checks that nothing of n is left on the machine.
func assertGone(t *testing.T, n *Node) {
	t.Helper()
	if _, err := os.Stat(n.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still there (%v)", n.Dir, err)
	}
	if m := mountsUnder(n.Dir); len(m) > 0 {
		t.Errorf("still mounted: %v", m)
	}
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, n.cgroup)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s/%s still there", h, n.cgroup)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.Bridge)); !os.IsNotExist(err) {
		t.Errorf("bridge %s still there", n.Bridge)
	}
	for _, pid := range allPIDs() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), n.Dir+"/") {
			t.Errorf("process %d still running: %s", pid, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	links, _ := filepath.Glob("/var/log/containers/*")
	for _, l := range links {
		if dest, _ := os.Readlink(l); strings.HasPrefix(dest, n.Dir+"/") {
			t.Errorf("log symlink %s -> %s still there", l, dest)
		}
	}
	cached, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", n.network+"-*"))
	if len(cached) > 0 {
		t.Errorf("CNI results cache still there: %v", cached)
	}
}

// secondNodeWithPod starts a node of its own (alongside the shared one)
// and runs the two-container pod on it, so the node has everything Stop
// must remove: shims, containers, mounts, a network namespace, a bridge.
func secondNodeWithPod(t *testing.T) (*Node, *corev1.Pod) {
	t.Helper()
	c := cluster.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := Start(ctx, c, Options{})
	if err != nil {
		t.Fatalf("starting a second node: %v", err)
	}
	t.Cleanup(func() { n.Stop() })
	t.Cleanup(func() { // runs before Stop removes the logs
		if t.Failed() {
			t.Logf("second node's logs:\n%s", n.LogTails(40))
		}
	})
	if n.PodSubnet == shared.PodSubnet || n.Bridge == shared.Bridge {
		t.Errorf("second node shares the pod network: %s/%s vs %s/%s", n.PodSubnet, n.Bridge, shared.PodSubnet, shared.Bridge)
	}
	ns := namespace(t)
	createPod(t, ns, twoContainerPod(n, "web-0"))
	p := waitReady(t, ns, "web-0", waitPod)
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.Bridge)); err != nil {
		t.Fatalf("no bridge %s with a pod running: %v", n.Bridge, err)
	}
	return n, p
}

func TestStopRemovesEverythingAndIsIdempotent(t *testing.T) {
	n, p := secondNodeWithPod(t)
	start := time.Now()
	if err := n.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	record(t, "Stop with a running pod took %s", time.Since(start).Round(time.Millisecond))
	assertGone(t, n)
	if err := n.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := clientset(t).CoreV1().Nodes().Get(context.Background(), n.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node %s still registered (%v)", n.Name, err)
	}
	// Stop drained the pod through the kubelet rather than leaving it.
	if _, err := getPod(t, p.Namespace, p.Name); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s/%s still there after Stop (%v)", p.Namespace, p.Name, err)
	}
	if err := nodeReady(context.Background(), clientset(t), shared.Name); err != nil {
		t.Errorf("the shared node suffered: %v", err)
	}
}

func TestLeftoversOfACrashedRunAreRemoved(t *testing.T) {
	n, _ := secondNodeWithPod(t)
	// A crash: the kubelet and containerd die without any cleanup, the
	// shims and containers live on, and the state file names an owner
	// that no longer exists.
	n.kubelet.Kill()
	n.containerd.Kill()
	n.state.Owner = owner{PID: 1 << 30, Start: 1}
	if err := n.saveState(); err != nil {
		t.Fatal(err)
	}
	shims := 0
	for _, pid := range allPIDs() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(b), "containerd-shim-runc-v2") && strings.Contains(string(b), n.Dir+"/") {
			shims++
		}
	}
	if shims == 0 {
		t.Fatalf("no shim outlived containerd: the crash was not realistic")
	}
	start := time.Now()
	if err := CleanupStale(n.opts.Dir, io.Discard); err != nil {
		t.Fatalf("CleanupStale: %v", err)
	}
	record(t, "leftovers of a crashed node (%d shims) removed in %s", shims, time.Since(start).Round(time.Millisecond))
	assertGone(t, n)
	// The live shared node is not stale and was not touched.
	if _, err := os.Stat(shared.Dir); err != nil {
		t.Errorf("shared node directory removed: %v", err)
	}
	if err := nodeReady(context.Background(), clientset(t), shared.Name); err != nil {
		t.Errorf("the shared node suffered: %v", err)
	}
}

func TestStaleOwnerDetection(t *testing.T) {
	self := selfOwner()
	if !self.alive() {
		t.Fatalf("this process (%+v) is not alive", self)
	}
	// The same PID with another start time is a reused PID: the node's
	// owner is gone.
	if (owner{PID: self.PID, Start: self.Start + 1}).alive() {
		t.Error("a reused PID counts as the owner")
	}
	if (owner{PID: 1 << 30, Start: 1}).alive() || (owner{}).alive() {
		t.Error("a missing process counts as alive")
	}
}
