package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
)

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (in-cluster config when empty)")
	namespaces := fs.String("namespaces", "", "comma-separated namespaces to manage (all when empty)")
	exclude := fs.String("exclude-namespaces", "kube-system", "comma-separated namespaces a cluster-wide controller leaves alone (the server filters them out of every watch); ignored with --namespaces unless given")
	journalDir := fs.String("journal-dir", "/var/lib/rollbook/journal", "journal directory (a persistent volume)")
	natsURL := fs.String("nats-url", "", "external NATS server or cluster URL(s); an embedded server when empty")
	natsCreds := fs.String("nats-creds", "", "NATS credentials file")
	natsCA := fs.String("nats-ca", "", "CA file to verify NATS servers")
	natsCert := fs.String("nats-cert", "", "client certificate for NATS mutual TLS")
	natsKey := fs.String("nats-key", "", "client key for NATS mutual TLS")
	noNATS := fs.Bool("no-nats", false, "do not publish the journal to NATS")
	natsStream := fs.String("stream", journal.DefaultStreamName, "JetStream stream the journal is published to; shards sharing one NATS server each need their own, and their own --subject-prefix")
	natsPrefix := fs.String("subject-prefix", journal.DefaultSubjectPrefix, "first token(s) of the journal's subjects (<prefix>.<kind>.<namespace>); the stream captures <prefix>.>, so streams on one server need prefixes that do not overlap, e.g. rollbook.shard-a")
	streamReplicas := fs.Int("stream-replicas", 1, "JetStream stream replicas (3 on a NATS cluster)")
	streamMaxAge := fs.Duration("stream-max-age", 30*24*time.Hour, "JetStream stream max age")
	streamMaxBytes := fs.String("stream-max-bytes", "", "JetStream stream max bytes, e.g. 5Gi (empty: 5Gi for the embedded server, which shares the journal's volume; unlimited on an external one)")
	ckptEvery := fs.Uint64("checkpoint-every", 50_000, "write a checkpoint of the folded state after this many records (0: by time only)")
	ckptInterval := fs.Duration("checkpoint-interval", time.Minute, "write a checkpoint this often when records arrived (0: by count only)")
	retainAge := fs.Duration("retain-age", 14*24*time.Hour, "prune journal records older than this, down to a checkpoint (0: keep; the NATS stream is the long-term copy)")
	shipEvery := fs.Duration("stream-checkpoint-every", time.Hour, "with --nats-url, copy the newest checkpoint beside the NATS stream this often, so that a new standby and replay of the stream start from it once the stream's limits removed its first records (0: never; off with the embedded server, whose stream no other process reads, unless given)")
	retainBytes := fs.String("retain-bytes", "3Gi", "prune the oldest journal records while the log is larger than this (0: no bound)")
	// NB: the client-side limit is set high enough never to bind: the
	// workers bound how many writes are in flight, and the apiserver's
	// priority and fairness is what should limit them. At 100 QPS the
	// limiter, not the cluster, held a 1,000-pod rollout to 35 pods/s
	// (3 writes a pod); at 1,000, 47 (BENCHMARKS §3).
	qps := fs.Float64("kube-api-qps", 500, "actuator write QPS, client side (the workers bound the writes in flight; the apiserver's priority and fairness limits them)")
	burst := fs.Int("kube-api-burst", 1000, "actuator write burst, client side")
	workers := fs.Int("workers", 32, "concurrent actuator writes")
	gcPercent := fs.Int("gc-percent", 0, fmt.Sprintf("GOGC once caught up with the cluster: the heap grows by this %% of the fleet's state between collections (0: %d unless the environment sets GOGC; 100 is Go's default, less CPU and about 1.5x the memory per pod at its steady peak)", ctl.SteadyGCPercent))
	gcRoom := fs.Int("gc-room-mib", ctl.SteadyGCRoom>>20, "the least room, in MiB, the heap gets to grow by between collections once caught up, whatever --gc-percent gives: a small fleet then collects about as seldom as at Go's default, which keeps Rollbook's own steps quick, and a large one at --gc-percent (0: no floor; ignored when the environment sets GOGC and --gc-percent is not given)")
	crossCheck := fs.Bool("cross-check-plans", false, "plan with the full planner as well at every plan, act on its plan, and log where the incremental planner differs: for tests, and for a suspected planner bug (costs a full plan each time)")
	debounce := fs.Duration("plan-debounce", 20*time.Millisecond, "the longest the controller gathers records after the first before it plans: longer plans less often, shorter reacts sooner")
	quiet := fs.Duration("plan-quiet", 500*time.Microsecond, "plan as soon as no record has arrived for this long, before --plan-debounce has passed (negative: always wait --plan-debounce)")
	analysisHosts := fs.String("analysis-allowed-hosts", "", "comma-separated hosts (host or host:port) analysis checks may reach; any when empty. Link-local addresses (instance metadata) are refused either way")
	metricsAddr := fs.String("metrics-addr", ":8080", "address of /metrics, /healthz and /readyz")
	pprofOn := fs.Bool("pprof", false, "also serve Go's /debug/pprof on the metrics address (CPU and heap profiles of a running controller; off by default: anyone who reaches the port could read them)")
	leaderElect := fs.Bool("leader-elect", true, "elect a leader on a Lease; standbys wait")
	streamWait := fs.Duration("stream-wait", 2*time.Second, "with --leader-elect and --nats-url, how long a plan's actions wait for the stream to hold their intents, so a standby that takes over knows every action the leader took; past it they go ahead (0: never wait)")
	leaseNS := fs.String("leader-elect-namespace", "", "namespace of the Lease (the pod's namespace when empty)")
	leaseName := fs.String("leader-elect-name", "rollbook", "name of the Lease")
	var lease leaseTiming
	fs.DurationVar(&lease.Duration, "leader-elect-lease-duration", 15*time.Second, "how long a standby waits after the leader's last renewal before it takes over")
	fs.DurationVar(&lease.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before it stops leading")
	fs.DurationVar(&lease.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try the Lease")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if *qps <= 0 || *burst <= 0 || *workers <= 0 {
		return errors.New("--kube-api-qps, --kube-api-burst and --workers must be positive")
	}
	// Checked here, not when the outbox starts: that is after the Lease
	// is won, and a standby would wait for it only to fail.
	if err := journal.ValidateStreamName(*natsStream); err != nil {
		return fmt.Errorf("--stream: %w", err)
	}
	if err := journal.ValidateSubjectPrefix(*natsPrefix); err != nil {
		return fmt.Errorf("--subject-prefix: %w", err)
	}
	maxBytes, err := parseBytes("--stream-max-bytes", *streamMaxBytes)
	if err != nil {
		return err
	}
	if *streamMaxBytes == "" && *natsURL == "" {
		maxBytes = 5 << 30
	}
	if *natsURL == "" && !flagSet(fs, "stream-checkpoint-every") {
		// The embedded server's stream shares the journal's volume and
		// no standby follows it: its checkpoints would take the volume's
		// room (~70 MiB at 10,000 pods) for no reader.
		*shipEvery = 0
	}
	keepBytes, err := parseBytes("--retain-bytes", *retainBytes)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*kubeconfig)
	if err != nil {
		return err
	}
	excluded := splitList(*exclude)
	if *namespaces != "" && !flagSet(fs, "exclude-namespaces") {
		excluded = nil // the default exclusion is for a cluster-wide watch
	}
	opts := controllerOptions{
		Config: cfg, JournalDir: *journalDir, Namespaces: splitList(*namespaces), ExcludeNamespaces: excluded, NoNATS: *noNATS,
		NATS:          journal.NATSConfig{URL: *natsURL, CredsFile: *natsCreds, CAFile: *natsCA, CertFile: *natsCert, KeyFile: *natsKey},
		Stream:        jetstream.StreamConfig{Name: *natsStream, Replicas: *streamReplicas, MaxAge: *streamMaxAge, MaxBytes: maxBytes},
		SubjectPrefix: *natsPrefix,
		QPS:           float32(*qps), Burst: *burst, Workers: *workers, GCPercent: *gcPercent, GCRoom: gcRoomBytes(*gcRoom), Debounce: *debounce, Quiet: *quiet, CrossCheck: *crossCheck, Logger: log, AnalysisHosts: splitList(*analysisHosts),
		Checkpoints: checkpointOptions{Every: *ckptEvery, Interval: *ckptInterval, RetainAge: *retainAge, RetainBytes: uint64(keepBytes), ShipEvery: cmp.Or(*shipEvery, -1)},
	}
	srv := &metricsServer{}
	ln, err := net.Listen("tcp", *metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := srv.mux()
	if *pprofOn {
		servePprof(mux)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	log.Info("rollbook: serving metrics", "addr", ln.Addr().String())

	// Until caught up (ctl.SteadyGC, then), and again after each
	// leadership lost: what catching up allocates is collected at
	// ctl.CatchUpGCPercent.
	gogc := ctl.CatchUpGC()
	log.Info("rollbook: catching up", "gogc", gogc)
	lead := func(ctx context.Context) error {
		c, err := newController(opts)
		if err != nil {
			return err
		}
		srv.lead(ctx, c)
		defer srv.set(nil)
		log.Info("rollbook: controller running", "journal", *journalDir, "namespaces", opts.Namespaces, "excluded", opts.ExcludeNamespaces)
		return c.run(ctx)
	}
	if !*leaderElect {
		return lead(ctx)
	}
	if opts.NATS.URL != "" && !opts.NoNATS {
		opts.StreamWait = *streamWait // the history a standby continues
	}
	var follow func(context.Context)
	if opts.NATS.URL != "" && !opts.NoNATS {
		// A standby keeps its journal a copy of the leader's, from the
		// stream they share: it continues the same history when it leads.
		f := &follower{dir: *journalDir, nats: opts.NATS, stream: opts.Stream.Name, ckpt: opts.Checkpoints, log: log}
		follow = func(ctx context.Context) { f.run(ctx, 10*time.Second) }
	}
	if !(lease.Duration > lease.RenewDeadline && lease.RenewDeadline > lease.RetryPeriod && lease.RetryPeriod > 0) {
		return errors.New("--leader-elect-lease-duration must exceed --leader-elect-renew-deadline, which must exceed --leader-elect-retry-period")
	}
	return withLeaderElection(ctx, cfg, *leaseNS, *leaseName, lease, log, srv, follow, lead)
}

// withLeaderElection runs lead while this process holds the Lease. A
// standby serves /healthz and waits; losing the lease ends the process so
// that it restarts clean (its journal stays on its own volume).
//
// follow, when not nil, runs while this process stands by; it must return
// soon after its context ends, before lead starts.
func withLeaderElection(ctx context.Context, cfg *rest.Config, ns, name string, lease leaseTiming, log *slog.Logger, srv *metricsServer, follow func(context.Context), lead func(context.Context) error) error {
	if ns == "" {
		b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		if err != nil {
			return errors.New("--leader-elect-namespace is required outside a pod (or --leader-elect=false for a single controller)")
		}
		ns = strings.TrimSpace(string(b))
	}
	id, _ := os.Hostname()
	id = fmt.Sprintf("%s-%d", id, os.Getpid())
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaName(ns, name),
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	// Leadership is a fence. The election runs on its own context, ended
	// only once lead has returned (or, when this process never led, once
	// ctx ends), so the Lease is released after the last write and its
	// outcome are journaled, never while lead may still be writing. When
	// the Lease is lost instead, lead's context ends at once and RenewDeadline
	// (10 s) leaves it the rest of the LeaseDuration (15 s) to stop before a
	// standby may lead.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElect()
	var leading atomic.Bool
	result := make(chan error, 1)
	stopStandby := context.AfterFunc(ctx, func() {
		if !leading.Load() {
			stopElect()
		}
	})
	defer stopStandby()
	srv.setStandby(true)
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	followed := make(chan struct{})
	if follow != nil {
		go func() { defer close(followed); follow(followCtx) }()
	} else {
		close(followed)
	}
	leaderelection.RunOrDie(electCtx, leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true,
		LeaseDuration: lease.Duration, RenewDeadline: lease.RenewDeadline, RetryPeriod: lease.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				leading.Store(true)
				stopFollow()
				<-followed // the follower has caught up and closed the journal
				log.Info("rollbook: leading", "identity", id)
				srv.setStandby(false)
				runCtx, cancel := context.WithCancel(lctx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel) // a signal ends lead too
				defer stop()
				result <- lead(runCtx)
				stopElect() // now release the Lease
			},
			OnStoppedLeading: func() { log.Info("rollbook: stopped leading", "identity", id) },
			OnNewLeader: func(l string) {
				srv.setLeader(l)
				if l != id {
					log.Info("rollbook: standing by", "leader", l)
				}
			},
		},
	})
	// NB: RunOrDie starts OnStartedLeading on its own goroutine before it
	// renews; a Lease is lost only after RenewDeadline of failed renewals,
	// by when that goroutine has long marked leading.
	if !leading.Load() {
		return nil
	}
	// The Lease may be lost while lead still runs: wait for it to stop.
	return <-result
}

func loadConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// leaseTiming is the leader election's clock (client-go's names).
type leaseTiming struct {
	Duration, RenewDeadline, RetryPeriod time.Duration
}

// parseBytes reads a size as Kubernetes spells quantities ("3Gi", "500M");
// empty is 0.
func parseBytes(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("%s=%q: want a size such as 3Gi or 500M", flag, s)
	}
	return q.Value(), nil
}

// flagSet reports whether the command line gave flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// gcRoomBytes is --gc-room-mib as controllerOptions.GCRoom, where 0 means
// the default and the flag's 0 means none.
func gcRoomBytes(mib int) int64 {
	if mib <= 0 {
		return -1
	}
	return int64(mib) << 20
}
