package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"rollbook.dev/rollbook/test/cluster"
)

// Annotation and label names on the simulated nodes.
const (
	// ManagedAnnotation marks the nodes this fleet's kwok manages (with the
	// value "fake"), so real kubelets' nodes on the same cluster are left
	// alone.
	ManagedAnnotation = "kwok.x-k8s.io/node"
	ManagedValue      = "fake"
	ZoneLabel         = "topology.kubernetes.io/zone"
	HostnameLabel     = "kubernetes.io/hostname"
	TypeLabel         = "type"
	TypeValue         = "kwok"
)

// Zones is the default zone spread of CreateNodes.
var Zones = []string{"zone-a", "zone-b", "zone-c"}

// Kinds of simulated kubelet (Options.Kind).
const (
	Kwok = "kwok" // kwok with this package's stages (the default)
	Lean = "lean" // package lean's kubelet, cmd/leankubelet
)

// Options configure the simulated kubelets. The zero value gives the
// defaults noted on each field.
type Options struct {
	// Kind is which simulated kubelet plays the nodes: Kwok (default) or
	// Lean. Both do what the package documentation lists; Lean keeps up
	// with thousands of pods on a few cores (BENCHMARKS.md, "A fleet that
	// keeps up").
	Kind string
	// ImageChangeDelay is how long a container whose image changed takes
	// to come back with the new image (default 200ms): the kubelet's kill,
	// pull and start.
	ImageChangeDelay time.Duration
	// StartDelay is how long a new pod takes to run (default 0).
	StartDelay time.Duration
	// ResizeDelay is how long a resize takes to show in the container
	// statuses (default 100ms).
	ResizeDelay time.Duration
	// SlowStartDelay is how long a "slowstart" container runs before it
	// is ready (default 3s, whole seconds: startedAt has no finer grain).
	SlowStartDelay time.Duration
	// PullBackOffDelay is how long ErrImagePull shows before
	// ImagePullBackOff (default 1s).
	PullBackOffDelay time.Duration
	// CrashLoopPeriod is the time between two restarts of a "crashloop"
	// container (default 1s; the kubelet's back-off is 10s doubling to 5m,
	// too slow for tests).
	CrashLoopPeriod time.Duration
	// Parallelism is kwok's pod stage workers, or the lean kubelet's pod
	// workers (default 16).
	Parallelism int
	// Dir holds the configuration, binary and log; default <cluster
	// dir>/<Kind>.
	Dir string
	// Progress receives build and start-up progress; nil discards it.
	Progress io.Writer
	// StartTimeout bounds the wait for the fleet to serve /healthz
	// (default 1m).
	StartTimeout time.Duration
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ImageChangeDelay, 200*time.Millisecond)
	def(&o.ResizeDelay, 100*time.Millisecond)
	def(&o.SlowStartDelay, 3*time.Second)
	def(&o.PullBackOffDelay, time.Second)
	def(&o.CrashLoopPeriod, time.Second)
	def(&o.StartTimeout, time.Minute)
	if o.Parallelism <= 0 {
		o.Parallelism = 16
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Kind == "" {
		o.Kind = Kwok
	}
	return o
}

func (o Options) validate() error {
	if o.Kind != Kwok && o.Kind != Lean {
		return fmt.Errorf("fleet: unknown Kind %q (want %q or %q)", o.Kind, Kwok, Lean)
	}
	return nil
}

// Fleet is a running simulated kubelet (kwok or lean) that plays kubelet
// for every node annotated ManagedAnnotation=ManagedValue (see
// CreateNodes).
type Fleet struct {
	Kind   string
	Dir    string // holds the configuration and the log
	Config string // path of the kwok configuration (kwok only)
	proc   *cluster.Process
	base   string // http://host:port of its /healthz
}

// Start builds the simulated kubelet of opts.Kind, writes its
// configuration and starts it against c's admin kubeconfig, waiting until
// it serves /healthz (its controllers are started by then). On failure it
// returns an error with the tail of its log.
func Start(ctx context.Context, c *cluster.Cluster, opts Options) (*Fleet, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		dir = filepath.Join(c.Dir, opts.Kind)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if opts.Kind == Lean {
		return startLean(ctx, c, opts, dir)
	}
	binDir, err := BuildKwok(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	conf, err := Config(opts)
	if err != nil {
		return nil, err
	}
	f := &Fleet{Kind: Kwok, Dir: dir, Config: filepath.Join(dir, "kwok.yaml")}
	if err := os.WriteFile(f.Config, conf, 0o644); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	f.proc, err = cluster.StartProcess("kwok", dir, filepath.Join(binDir, "kwok"), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--config=" + f.Config,
		"--manage-nodes-with-annotation-selector=" + ManagedAnnotation + "=" + ManagedValue,
		// kwok renews each node's Lease (a quarter of this), which is what
		// keeps the node lifecycle controller from marking nodes NotReady;
		// node status heartbeats can then be rare.
		"--node-lease-duration-seconds=40",
		// /healthz to wait on; loopback only.
		"--server-address=127.0.0.1:" + strconv.Itoa(port),
	}, []string{
		// kwok also loads ~/.kwok/kwok.yaml when it exists: keep a user's
		// kwok setup out of the tests.
		"KWOK_WORKDIR=" + dir,
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "kwok starting (config %s)\n", f.Config)
	f.base = "http://127.0.0.1:" + strconv.Itoa(port)
	if err := f.waitHealthy(ctx, opts.StartTimeout); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// waitHealthy waits until the fleet serves /healthz with 200.
func (f *Fleet) waitHealthy(ctx context.Context, timeout time.Duration) error {
	url := f.base + "/healthz"
	hc := &http.Client{Timeout: 2 * time.Second}
	return f.proc.WaitFor(ctx, timeout, "healthy", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// Process is the simulated kubelet's child process (its log, pid, whether
// it exited).
func (f *Fleet) Process() *cluster.Process { return f.proc }

// LogTail returns the last n lines of the fleet's log, for failing tests.
func (f *Fleet) LogTail(n int) string { return cluster.Tail(f.proc.Log, n) }

// Healthy reports an error with the log's tail when the fleet has exited.
func (f *Fleet) Healthy() error {
	if exited, err := f.proc.Exited(); exited {
		return fmt.Errorf("fleet: %s exited (%v)\n%s", f.proc.Name, err, f.LogTail(40))
	}
	return nil
}

// Stop stops the fleet. Nodes and pods stay; their leases expire.
func (f *Fleet) Stop() {
	if f != nil && f.proc != nil {
		f.proc.Stop(10 * time.Second)
	}
}
