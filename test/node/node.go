package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
)

// Options configure a node. The zero value is usable.
type Options struct {
	// Name is the Node object's name; "rollbook-node-<random>" when empty.
	Name string
	// Dir is where the node's own directory is created (os.TempDir() when
	// empty). It must be short: containerd refuses a shim socket directory
	// longer than 42 characters, and the node's is <Dir>/rollbook-node-XXXXXXXX/s.
	Dir string
	// Progress receives build and start-up progress; nil discards it.
	Progress io.Writer
	// StartTimeout bounds each component's wait for readiness (default 2m).
	StartTimeout time.Duration
	// Host binaries from Debian packages (defaults: the Default* constants).
	// Tests point one at a missing path to check the error.
	Runc, CNIBinDir, Busybox, Iptables, Conntrack string
	// Kubelet is the kubelet binary (default: the cluster's, built by
	// cluster.KubernetesBinaries).
	Kubelet string
	// KubeletArgs are appended to the kubelet's flags.
	KubeletArgs []string
	// PodSubnet is the pod network's CIDR (default: the first
	// 10.244.N.0/24 that no interface, route or other live node uses).
	PodSubnet string
}

func (o *Options) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Runc, DefaultRunc)
	def(&o.CNIBinDir, DefaultCNIBinDir)
	def(&o.Busybox, DefaultBusybox)
	def(&o.Iptables, DefaultIptables)
	def(&o.Conntrack, DefaultConntrack)
	def(&o.Dir, os.TempDir())
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Node is a running containerd and kubelet registered with a cluster.
type Node struct {
	// Name is the Node object's name (and its kubernetes.io/hostname label).
	Name string
	// Dir holds everything the node writes: configs, logs, containerd's
	// and the kubelet's state. Stop removes it.
	Dir string
	// Socket is containerd's gRPC socket (the CRI endpoint).
	Socket string
	// NodeIP is the address the kubelet reports (the default route's
	// interface), empty when the machine has none.
	NodeIP string
	// PodSubnet is the pod network; Bridge is its interface on the host.
	PodSubnet, Bridge string
	// Images maps every image tag the node has (AppV1, AppV2, Sidecar,
	// Pause) to its digest name, repo@sha256:..., which is what a
	// container's status.imageID shows.
	Images map[string]string
	// Timings are how long the start-up phases took.
	Timings Timings

	id, cgroup, network  string
	opts                 Options
	cluster              *cluster.Cluster
	bins                 containerdBins
	kubeletBin           string
	paths                paths
	snapshotter          string
	kubeletPort          int
	healthzPort          int
	containerd, kubelet  *cluster.Process
	stopOnce             sync.Once
	stopErr              error
	progress             io.Writer
	startedAt, kubeletAt time.Time
	state                state
	clientset            kubernetes.Interface
}

// Timings of Start.
type Timings struct {
	// Containerd: from its start to serving the CRI plugin.
	Containerd time.Duration
	// Images: building and importing the images.
	Images time.Duration
	// NodeReady: from the kubelet's start to the Node's Ready condition.
	NodeReady time.Duration
	// Total: the whole of Start, after the binaries were built.
	Total time.Duration
}

func (t Timings) String() string {
	return fmt.Sprintf("containerd ready %s, images %s, node Ready %s after kubelet start, start total %s",
		t.Containerd.Round(time.Millisecond), t.Images.Round(time.Millisecond),
		t.NodeReady.Round(time.Millisecond), t.Total.Round(time.Millisecond))
}

// paths are the files and directories under Node.Dir.
type paths struct {
	containerdRoot, containerdState, containerdTemp, containerdConfig string
	shimSockets, runcRoot                                             string
	cniConf, ipam                                                     string
	kubeletRoot, kubeletConfig, resolvConf, podLogs                   string
	state                                                             string
}

func pathsIn(dir string) paths {
	j := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	return paths{
		containerdRoot:   j("containerd", "root"),
		containerdState:  j("containerd", "state"),
		containerdTemp:   j("containerd", "tmp"),
		containerdConfig: j("containerd.toml"),
		shimSockets:      j("s"),
		runcRoot:         j("runc"),
		cniConf:          j("cni", "net.d"),
		ipam:             j("cni", "ipam"),
		kubeletRoot:      j("kubelet"),
		kubeletConfig:    j("kubelet.yaml"),
		resolvConf:       j("resolv.conf"),
		podLogs:          j("pod-logs"),
		state:            j(stateFile),
	}
}

// dirPrefix names every node directory, cgroup and so on; bridgePrefix
// every bridge (interface names are limited to 15 characters).
const (
	dirPrefix    = "rollbook-node-"
	bridgePrefix = "rbnode"
)

// Start starts a node joined to c: it checks the host packages, removes
// what an earlier crashed run left behind, builds containerd (once),
// starts it, imports the images, starts the kubelet and waits until the
// Node is Ready. Any failure stops and removes what was started and names
// the component with the tail of its log.
func Start(ctx context.Context, c *cluster.Cluster, opts Options) (n *Node, err error) {
	opts.defaults()
	if err := CheckPrerequisites(opts); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("node: a real node needs root (mounts, cgroups, network namespaces)")
	}
	if opts.Kubelet == "" {
		opts.Kubelet = c.Bins.Kubelet
	}
	if st, err := os.Stat(opts.Kubelet); err != nil || st.IsDir() {
		return nil, fmt.Errorf("node: no kubelet binary at %q (built by cluster.KubernetesBinaries): %v", opts.Kubelet, err)
	}
	if err := CleanupStale(opts.Dir, opts.Progress); err != nil {
		return nil, err
	}
	binDir, err := BuildContainerd(ctx, opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("node: building containerd: %w", err)
	}
	n, err = newNode(c, opts, containerdBinsIn(binDir))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if stopErr := n.Stop(); stopErr != nil {
				err = errors.Join(err, stopErr)
			}
		}
	}()
	if err := n.prepare(); err != nil {
		return n, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return n, err
	}
	t := time.Now()
	if n.Images, err = n.importImages(ctx); err != nil {
		return n, err
	}
	n.Timings.Images = time.Since(t)
	if err := n.startKubelet(ctx); err != nil {
		return n, err
	}
	n.Timings.Total = time.Since(n.startedAt)
	fmt.Fprintf(n.progress, "node %s Ready: %s\n", n.Name, n.Timings)
	return n, nil
}

// newNode picks the node's identity and directory and records it in the
// state file before anything else is created, so a crash from here on
// leaves something CleanupStale recognises.
func newNode(c *cluster.Cluster, opts Options, bins containerdBins) (*Node, error) {
	var id, dir string
	for range 10 {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		id = hex.EncodeToString(b)
		dir = filepath.Join(opts.Dir, dirPrefix+id)
		if err := os.Mkdir(dir, 0o755); err == nil {
			break
		} else if !os.IsExist(err) {
			return nil, fmt.Errorf("node: %w", err)
		}
		dir = ""
	}
	if dir == "" {
		return nil, errors.New("node: could not create a node directory")
	}
	p := pathsIn(dir)
	if len(p.shimSockets) > 42 {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("node: directory %s too long: containerd's shim socket directory %s must be at most 42 characters; set Options.Dir to a shorter path", dir, p.shimSockets)
	}
	name := opts.Name
	if name == "" {
		name = dirPrefix + id
	}
	cs, err := kubernetes.NewForConfig(c.Config())
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("node: %w", err)
	}
	n := &Node{
		Name:      name,
		Dir:       dir,
		Socket:    filepath.Join(dir, "containerd.sock"),
		Bridge:    bridgePrefix + id,
		id:        id,
		cgroup:    dirPrefix + id,
		network:   "rollbook-" + id,
		opts:      opts,
		cluster:   c,
		bins:      bins,
		paths:     p,
		progress:  opts.Progress,
		startedAt: time.Now(),
		clientset: cs,
	}
	n.kubeletBin = opts.Kubelet
	n.state = state{
		ID: id, Name: name, Dir: dir, Cgroup: n.cgroup, Bridge: n.Bridge, Network: n.network,
		Owner: selfOwner(),
	}
	if err := n.saveState(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return n, nil
}

// prepare picks addresses and ports, probes the snapshotter, creates the
// cgroup root and writes the configuration files.
func (n *Node) prepare() error {
	var err error
	live, err := liveStates(n.opts.Dir, n.Dir)
	if err != nil {
		return err
	}
	if n.PodSubnet = n.opts.PodSubnet; n.PodSubnet == "" {
		if n.PodSubnet, err = pickSubnet(live); err != nil {
			return err
		}
	}
	n.state.PodSubnet = n.PodSubnet
	n.NodeIP = defaultRouteIPv4()
	if n.kubeletPort, err = cluster.FreePort(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.healthzPort, err = cluster.FreePort(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.snapshotter, err = probeSnapshotter(n.Dir); err != nil {
		return err
	}
	if err := n.saveState(); err != nil {
		return err
	}
	if err := recordHost(n.opts.Dir); err != nil {
		return err
	}
	if err := createCgroup(n.cgroup); err != nil {
		return err
	}
	for _, d := range []string{n.paths.containerdRoot, n.paths.containerdState, n.paths.containerdTemp,
		n.paths.shimSockets, n.paths.runcRoot, n.paths.ipam, n.paths.kubeletRoot, n.paths.podLogs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	return n.writeConfigs()
}

func (n *Node) startContainerd(ctx context.Context) error {
	start := time.Now()
	// The shim runs runc by absolute path (BinaryName) but the CNI plugins
	// and the shim's helpers are looked up on PATH.
	env := []string{"PATH=" + filepath.Dir(n.bins.containerd) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	p, err := cluster.StartProcess("containerd", n.Dir, n.bins.containerd,
		[]string{"--config", n.paths.containerdConfig, "--log-level", "info"}, env)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.containerd = p
	fmt.Fprintf(n.progress, "containerd starting for node %s (%s snapshotter)\n", n.Name, n.snapshotter)
	err = p.WaitFor(ctx, n.opts.StartTimeout, "serving the CRI plugin", func(ctx context.Context) error {
		if _, err := os.Stat(n.Socket); err != nil {
			return err
		}
		out, err := n.ctr(ctx, "plugins", "ls")
		if err != nil {
			return err
		}
		return criPluginsOK(out)
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.Timings.Containerd = time.Since(start)
	return nil
}

// criPluginsOK checks `ctr plugins ls` for the CRI plugins: containerd
// serves its socket even when they failed to load (a bad snapshotter, a
// CNI problem), and the kubelet would then only say the runtime is down.
func criPluginsOK(list string) error {
	seen := 0
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		typ, id, status := f[0], f[1], f[len(f)-1]
		if strings.HasPrefix(typ, "io.containerd.cri.v1") || (typ == "io.containerd.grpc.v1" && id == "cri") {
			seen++
			if status != "ok" {
				return fmt.Errorf("containerd plugin %s.%s is %s", typ, id, status)
			}
		}
	}
	if seen == 0 {
		return errors.New("no CRI plugin listed yet")
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context) error {
	n.kubeletAt = time.Now()
	p, err := cluster.StartProcess("kubelet", n.Dir, n.kubeletBin, n.kubeletArgs(), nil)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.kubelet = p
	fmt.Fprintf(n.progress, "kubelet starting as node %s\n", n.Name)
	hc := &http.Client{Timeout: 2 * time.Second}
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.healthzPort)
	err = p.WaitFor(ctx, n.opts.StartTimeout, "healthy", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthz, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", healthz, resp.Status)
		}
		return nil
	})
	if err == nil {
		err = p.WaitFor(ctx, n.opts.StartTimeout, "Ready", func(ctx context.Context) error {
			return nodeReady(ctx, n.clientset, n.Name)
		})
	}
	if err != nil {
		if exited, _ := n.containerd.Exited(); exited {
			err = fmt.Errorf("%w\n(containerd exited too)\n%s", err, cluster.Tail(n.containerd.Log, 20))
		}
		return fmt.Errorf("node: %w", err)
	}
	n.Timings.NodeReady = time.Since(n.kubeletAt)
	return nil
}

// nodeReady returns nil when the Node's Ready condition is True, and
// otherwise what the condition says.
func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s Ready=%s: %s: %s", name, c.Status, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", name)
}

// LogTails returns the tail of containerd's and the kubelet's logs, for
// failing tests.
func (n *Node) LogTails(lines int) string {
	var b strings.Builder
	for _, p := range []*cluster.Process{n.containerd, n.kubelet} {
		if p != nil {
			b.WriteString(cluster.Tail(p.Log, lines))
			b.WriteString("\n")
		}
	}
	return b.String()
}

// Schedule makes spec run on this node: a nodeSelector on its hostname
// label (the scheduler still places the pod, as in a real cluster) and
// imagePullPolicy Never wherever none is set, since there is no registry.
func (n *Node) Schedule(spec *corev1.PodSpec) {
	if spec.NodeSelector == nil {
		spec.NodeSelector = map[string]string{}
	}
	spec.NodeSelector[corev1.LabelHostname] = n.Name
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			if cs[i].ImagePullPolicy == "" {
				cs[i].ImagePullPolicy = corev1.PullNever
			}
		}
	}
}

// Stop drains the node's pods through the apiserver (so the kubelet stops
// their sandboxes and CNI releases their addresses the normal way), stops
// the kubelet and containerd, and then removes everything the node
// created, whatever state it is in: processes (shims and containers
// included), mounts, cgroups, the bridge, host files and the directory. It
// can be called more than once; later calls return the first result.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { n.stopErr = n.stop() })
	return n.stopErr
}

func (n *Node) stop() error {
	var errs []error
	if n.kubelet != nil {
		if exited, _ := n.kubelet.Exited(); !exited {
			n.drainPods()
		}
		n.kubelet.Stop(10 * time.Second)
	}
	if n.containerd != nil {
		n.containerd.Stop(10 * time.Second)
	}
	if err := teardown(n.state, n.progress); err != nil {
		errs = append(errs, err)
	}
	// The Node object last: a running kubelet would register it again.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.clientset.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
	return errors.Join(errs...)
}

// drainPods deletes the pods bound to the node with a short grace period
// and waits, bounded, until the kubelet has stopped them and confirmed
// their deletion. Whatever remains is killed by teardown.
func (n *Node) drainPods() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := n.clientset.CoreV1().Pods(metav1.NamespaceAll)
	sel := metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name}
	list, err := pods.List(ctx, sel)
	if err != nil || len(list.Items) == 0 {
		return
	}
	grace := int64(1)
	for _, p := range list.Items {
		_ = n.clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	_ = cluster.Poll(ctx, 30*time.Second, func() error {
		list, err := pods.List(ctx, sel)
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left", len(list.Items))
		}
		return nil
	})
}
