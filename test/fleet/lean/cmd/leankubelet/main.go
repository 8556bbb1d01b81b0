// Command leankubelet runs a lean.Kubelet: simulated kubelets for the
// annotated nodes of a cluster and their pods (see package lean). It
// serves /healthz (200 once it works on the listed nodes and pods) and
// /stats (lean.Stats as JSON) on --server-address, and logs JSON to stderr.
//
//	leankubelet --kubeconfig admin.kubeconfig --server-address 127.0.0.1:10247
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"rollbook.dev/rollbook/test/fleet/lean"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "leankubelet: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg lean.Config
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	addr := flag.String("server-address", "127.0.0.1:0", "where /healthz and /stats are served")
	nodes := flag.String("manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake", "the nodes to play kubelet for: key=value of an annotation")
	qps := flag.Float64("kube-api-qps", 5000, "client rate limit (requests per second)")
	flag.DurationVar(&cfg.Delays.Start, "start-delay", 0, "a new pod's start")
	flag.DurationVar(&cfg.Delays.ImageChange, "image-change-delay", 200*time.Millisecond, "an image change's restart")
	flag.DurationVar(&cfg.Delays.Resize, "resize-delay", 100*time.Millisecond, "a resize showing in the status")
	flag.DurationVar(&cfg.Delays.SlowStart, "slow-start-delay", 3*time.Second, `a "slowstart" container's readiness, from its startedAt`)
	flag.DurationVar(&cfg.Delays.PullBackOff, "pull-back-off-delay", time.Second, "ErrImagePull → ImagePullBackOff")
	flag.DurationVar(&cfg.Delays.CrashLoop, "crash-loop-period", time.Second, `between two restarts of a "crashloop" container`)
	flag.IntVar(&cfg.Workers, "workers", 16, "pods worked on at once")
	flag.DurationVar(&cfg.LeaseDuration, "node-lease-duration", 40*time.Second, "node Lease duration (renewed every quarter of it)")
	flag.DurationVar(&cfg.HeartbeatPeriod, "node-status-period", time.Minute, "node status heartbeat period")
	flag.Parse()
	var ok bool
	if cfg.NodeAnnotation, cfg.NodeAnnotationValue, ok = strings.Cut(*nodes, "="); !ok || cfg.NodeAnnotation == "" {
		return fmt.Errorf("--manage-nodes-with-annotation-selector %q: want key=value", *nodes)
	}
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))

	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = float32(*qps), int(2**qps)
	rc.UserAgent = "leankubelet"
	// Protobuf halves the decoding cost of the watch: most of this
	// process's work at thousands of pods.
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k := lean.New(cs, cfg)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !k.Synced() {
			http.Error(w, "not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(k.Stats())
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("serving", "err", err)
			stop()
		}
	}()
	defer srv.Close()
	go logStats(ctx, k, cfg.Log)
	err = k.Run(ctx)
	cfg.Log.Info("stopped", "stats", k.Stats())
	return err
}

// logStats logs the counters every 10 s while they move.
func logStats(ctx context.Context, k *lean.Kubelet, log *slog.Logger) {
	var last lean.Stats
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s := k.Stats(); s != last {
			log.Info("stats", "stats", s)
			last = s
		}
	}
}
