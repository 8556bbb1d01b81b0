package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configure a local control plane. The zero value is usable.
type Options struct {
	// Dir holds data, certs, kubeconfigs and component logs; a temporary
	// directory when empty (removed by Stop unless KeepDir).
	Dir     string
	KeepDir bool
	// Progress receives build and start-up progress; nil discards it.
	Progress io.Writer
	// APIServerPort fixes the apiserver's port (0 picks a free one).
	APIServerPort int
	// EtcdCompactionInterval is how often the apiserver compacts etcd
	// (default 5m, the upstream default). Tests that need a 410 compact
	// explicitly through Cluster.CompactEtcd instead of waiting.
	EtcdCompactionInterval time.Duration
	// StartTimeout bounds each component's wait for readiness (default 2m).
	StartTimeout time.Duration
	// AuditLog runs the apiserver with an audit log (AuditPolicy) in
	// Dir/audit.log, JSON lines, so benchmarks and tests can count every
	// client's writes from the server's side (CountAudit).
	AuditLog bool
	// MaxRequestsInflight and MaxMutatingRequestsInflight set the
	// apiserver's flags of those names, which size API Priority and
	// Fairness; 0 leaves the upstream defaults (400 and 200), which tests
	// keep: the test ground is no more lenient than a default cluster.
	MaxRequestsInflight, MaxMutatingRequestsInflight int
	// Profiling serves the apiserver's /debug/pprof (its upstream
	// default; off here, as hardened clusters run it, unless a benchmark
	// asks for the apiserver's CPU profile).
	Profiling bool
}

// Cluster is a running etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on loopback.
type Cluster struct {
	Bins       Bins
	Dir        string
	Server     string // https://127.0.0.1:<port>
	Kubeconfig string // admin kubeconfig path
	EtcdURL    string
	AuditLog   string // the audit log's path when Options.AuditLog, else ""
	token      string
	opts       Options
	procs      []*Process
}

// Start builds (once) and starts the control plane and waits until every
// component is ready; on any failure it stops what it started and returns an
// error naming the component with the tail of its log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if opts.EtcdCompactionInterval == 0 {
		opts.EtcdCompactionInterval = 5 * time.Minute
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	bins, err := KubernetesBinaries(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rollbook-cluster-"); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{Bins: bins, Dir: dir, opts: opts, token: randomToken()}
	for _, start := range []func(context.Context) error{c.startEtcd, c.startAPIServer, c.startControllerManager, c.startScheduler} {
		err := start(ctx)
		// NB: a port found free can be taken by another test package's
		// cluster before the component binds it; try again with new ports.
		for try := 0; err != nil && strings.Contains(err.Error(), "address already in use") && try < 3; try++ {
			c.procs = c.procs[:len(c.procs)-1]
			err = start(ctx)
		}
		if err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client, err := FreePort()
	if err != nil {
		return err
	}
	peer, err := FreePort()
	if err != nil {
		return err
	}
	c.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	p, err := StartProcess("etcd", c.Dir, c.Bins.Etcd, []string{
		"--name=default",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + c.EtcdURL, "--advertise-client-urls=" + c.EtcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// NB: a test cluster's etcd does not need durability across machine
		// crashes, and fsync on a shared VM disk dominates apiserver latency.
		"--unsafe-no-fsync",
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	fmt.Fprintf(c.opts.Progress, "etcd starting on %s\n", c.EtcdURL)
	return p.WaitFor(ctx, c.opts.StartTimeout, "healthy", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, c.EtcdURL+"/health", "")
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	port := c.opts.APIServerPort
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return err
		}
	} else if err := PortFree("kube-apiserver", port); err != nil {
		return err
	}
	pki := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	saKey, saPub, err := writeServiceAccountKeys(pki)
	if err != nil {
		return err
	}
	tokens := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.token+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", port)
	extra, err := c.auditArgs()
	if err != nil {
		return err
	}
	if n := c.opts.MaxRequestsInflight; n > 0 {
		extra = append(extra, "--max-requests-inflight="+strconv.Itoa(n))
	}
	if n := c.opts.MaxMutatingRequestsInflight; n > 0 {
		extra = append(extra, "--max-mutating-requests-inflight="+strconv.Itoa(n))
	}
	p, err := StartProcess("kube-apiserver", c.Dir, c.Bins.APIServer, append([]string{
		"--etcd-servers=" + c.EtcdURL,
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// A loopback advertise address is only accepted without the
		// endpoint reconciler; nothing here needs the kubernetes Service's
		// endpoints.
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + pki,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// NB: the default admission plugins, none disabled: a real
		// cluster's ServiceAccount plugin gives every pod a service account
		// and a token volume its template never had, and the product must
		// be proven against pods as a real apiserver stores them.
		"--etcd-compaction-interval=" + c.opts.EtcdCompactionInterval.String(),
		"--profiling=" + strconv.FormatBool(c.opts.Profiling),
		"--v=1",
	}, extra...), nil)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, c.token); err != nil {
		return err
	}
	fmt.Fprintf(c.opts.Progress, "kube-apiserver starting on %s\n", c.Server)
	hc, err := rest.HTTPClientFor(c.Config())
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return p.WaitFor(ctx, c.opts.StartTimeout, "ready", func(ctx context.Context) error {
		return httpOK(ctx, hc, c.Server+"/readyz", "")
	})
}

func (c *Cluster) componentArgs(name string) ([]string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		// A secure port with a self-signed certificate gives /healthz to
		// wait on; it is bound to loopback.
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.Dir, name+"-pki"),
		"--leader-elect=false",
		"--kube-api-qps=500", "--kube-api-burst=1000",
		"--v=1",
	}, nil
}

func (c *Cluster) componentPort(args []string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--secure-port="); ok {
			return v
		}
	}
	return ""
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	args, err := c.componentArgs("kube-controller-manager")
	if err != nil {
		return err
	}
	args = append(args,
		"--controllers=*,-serviceaccount-token",
		"--service-account-private-key-file="+filepath.Join(c.Dir, "pki", "sa.key"),
		// The apiserver's self-signed serving certificate (it writes the
		// chain, CA included, to apiserver.crt in its cert-dir): the
		// root-ca-cert-publisher puts it into every namespace's
		// kube-root-ca.crt, which the token volume the ServiceAccount
		// admission plugin adds to pods projects as ca.crt.
		"--root-ca-file="+filepath.Join(c.Dir, "pki", "apiserver.crt"),
		"--use-service-account-credentials=false",
		"--concurrent-statefulset-syncs=20",
		"--concurrent-daemonset-syncs=10",
	)
	return c.startComponent(ctx, "kube-controller-manager", c.Bins.ControllerManager, args)
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	args, err := c.componentArgs("kube-scheduler")
	if err != nil {
		return err
	}
	return c.startComponent(ctx, "kube-scheduler", c.Bins.Scheduler, args)
}

func (c *Cluster) startComponent(ctx context.Context, name, bin string, args []string) error {
	p, err := StartProcess(name, c.Dir, bin, args, nil)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	fmt.Fprintf(c.opts.Progress, "%s starting\n", name)
	url := "https://127.0.0.1:" + c.componentPort(args) + "/healthz"
	hc := &http.Client{Transport: insecureTransport(), Timeout: 5 * time.Second}
	return p.WaitFor(ctx, c.opts.StartTimeout, "healthy", func(ctx context.Context) error {
		return httpOK(ctx, hc, url, "")
	})
}

// Config returns an admin (system:masters) client configuration with high
// QPS: tests create fleets.
func (c *Cluster) Config() *rest.Config {
	return &rest.Config{
		Host:            c.Server,
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000,
		Burst:           2000,
	}
}

// Clientset is an admin clientset, for test setup and assertions.
func (c *Cluster) Clientset() *kubernetes.Clientset {
	return kubernetes.NewForConfigOrDie(c.Config())
}

// ServiceAccountConfig returns a configuration that authenticates as the
// service account ns/name (created if missing) with a fresh bound token, so
// tests exercise the RBAC the product asks for, not system:masters.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, ns, name string) (*rest.Config, error) {
	cs := c.Clientset()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("cluster: creating service account %s/%s: %w", ns, name, err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster: token for %s/%s: %w", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(c.Config())
	cfg.BearerToken = tr.Status.Token
	return cfg, nil
}

// WaitDefaultServiceAccount waits until the serviceaccount controller has
// created the default ServiceAccount of namespace ns: until then the
// ServiceAccount admission plugin refuses every pod in ns, and workload
// controllers retry on their own backoff. Call it after creating a
// namespace and before creating pods or workloads in it.
func WaitDefaultServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	err := Poll(ctx, time.Minute, func() error {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(gctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster: default service account of namespace %s: %w", ns, err)
	}
	return nil
}

// Process returns a running component by name ("etcd", "kube-apiserver", ...).
func (c *Cluster) Process(name string) *Process {
	for _, p := range c.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// LogTails returns the tail of every component's log, for failing tests.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, p := range c.procs {
		b.WriteString(Tail(p.Log, n))
		b.WriteString("\n")
	}
	return b.String()
}

// Stop stops every component, newest first, and removes the directory
// unless asked to keep it.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].Stop(10 * time.Second)
	}
	if !c.opts.KeepDir && c.opts.Dir == "" {
		os.RemoveAll(c.Dir)
	}
}

func httpOK(ctx context.Context, hc *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return errors.Join(errNotReady, fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body))))
	}
	return nil
}
