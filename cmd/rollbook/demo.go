//go:build !nodemo

// The demo links the test harness (test/cluster, test/fleet): a build for
// production (the container image, deploy/image) leaves it out with
// -tags nodemo (see demo_off.go); `go run ./cmd/rollbook demo` and
// `go install` keep it.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

func demoCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	pods := fs.Int("pods", 300, "StatefulSet replicas in the fleet")
	nodes := fs.Int("nodes", 30, "simulated nodes (3 zones)")
	maxUnavailable := fs.String("max-unavailable", "10%", "rollout maxUnavailable")
	stay := fs.Bool("stay", false, "keep the cluster running after the report, until Ctrl-C")
	dir := fs.String("dir", "", "directory for the cluster, journal and logs (a temporary one when empty)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "rollbook-demo-")
		if err != nil {
			return err
		}
		*dir = d
	}
	out := os.Stdout
	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(out, "\033[1m==> "+format+"\033[0m  (%s)\n", append(a, time.Since(start).Round(100*time.Millisecond))...)
	}

	step("starting a local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)")
	c, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(*dir, "cluster"), KeepDir: true, Progress: out})
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Fprintf(out, "    export KUBECONFIG=%s   # to look around with kubectl (%s)\n", c.Kubeconfig, c.Bins.Kubectl)

	step("starting kwok with %d simulated nodes in 3 zones", *nodes)
	fl, err := fleet.Start(ctx, c, fleet.Options{Progress: out})
	if err != nil {
		return err
	}
	defer fl.Stop()
	cs := c.Clientset()
	if _, err := fleet.CreateNodes(ctx, cs, *nodes, fleet.Zones); err != nil {
		return err
	}
	if err := deploy.ApplyCRD(ctx, c.Config()); err != nil {
		return err
	}

	step("starting the Rollbook controller (journal and embedded NATS in %s)", filepath.Join(*dir, "journal"))
	logf, err := os.Create(filepath.Join(*dir, "rollbook.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	ctrl, err := newController(controllerOptions{
		Config: c.Config(), JournalDir: filepath.Join(*dir, "journal"), QPS: 300, Burst: 600, Workers: 32,
		Checkpoints: checkpointOptions{Every: 50_000, Interval: 10 * time.Second},
		Logger:      slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- ctrl.run(cctx) }()
	defer func() { cancel(); <-ctrlDone }()

	const ns = "demo"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The StatefulSet's pods are refused until the namespace's default
	// ServiceAccount exists; its controller would retry, on its backoff.
	if err := cluster.WaitDefaultServiceAccount(ctx, cs, ns); err != nil {
		return err
	}
	step("creating StatefulSet %s/web: %d pods (app + log sidecar), updateStrategy OnDelete, readiness gate %s", ns, *pods, planner.GateCondition)
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, demoStatefulSet(int32(*pods)), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := waitBar(ctx, out, "pods Ready", func() (int, int, string, error) {
		st, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return 0, 0, "", err
		}
		return int(st.Status.ReadyReplicas), *pods, "", nil
	}); err != nil {
		return err
	}
	// Every container's identity now, to check at the end that the
	// rollout restarted app alone.
	before, err := listContainers(ctx, cs, ns)
	if err != nil {
		return err
	}
	writesBefore := ctrl.act.Stats().Requests

	step("rolling app:v1 -> app:v2 in place: new template, then an InPlaceRollout (maxUnavailable %s, steps 10%% / 100%%, scattered over zones)", *maxUnavailable)
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.example/app:v2"}]}}}}`
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return err
	}
	rollStart := time.Now()
	dyn := dynamic.NewForConfigOrDie(c.Config())
	if _, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(ns).Create(ctx, demoRollout(*maxUnavailable), metav1.CreateOptions{}); err != nil {
		return err
	}
	var final map[string]any
	if err := waitBar(ctx, out, "updated and ready", func() (int, int, string, error) {
		select {
		case err := <-ctrlDone:
			ctrlDone <- err
			return 0, 0, "", fmt.Errorf("controller stopped: %v", err)
		default:
		}
		u, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(ns).Get(ctx, "web-v2", metav1.GetOptions{})
		if err != nil {
			return 0, 0, "", err
		}
		st, _, _ := unstructured.NestedMap(u.Object, "status")
		final = st
		phase, _ := st["phase"].(string)
		n := func(k string) int { v, _ := st[k].(int64); return int(v) }
		label := fmt.Sprintf("step %d/2  unavailable %3d  %s", n("currentStep")+1, n("unavailable"), phase)
		if phase == "Failed" || phase == "Paused" && n("failed") > 0 {
			return 0, 0, "", fmt.Errorf("rollout %s: %v", phase, st["conditions"])
		}
		done := n("updatedReady")
		if phase != "Succeeded" {
			done = min(done, n("replicas")-1) // not done until the rollout says so
		}
		return done, max(n("replicas"), 1), label, nil
	}); err != nil {
		return err
	}
	took := time.Since(rollStart)

	// The report.
	stsObj, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	after, err := listContainers(ctx, cs, ns)
	if err != nil {
		return err
	}
	notKept := keptContainers(before, after, "app")
	writes := diffCounts(ctrl.act.Stats().Requests, writesBefore)
	total := 0
	for k, v := range writes {
		if strings.HasPrefix(k, "patch pods") || strings.HasPrefix(k, "delete pods") {
			total += int(v)
		}
	}
	cancel()
	<-ctrlDone
	ctrlDone <- nil
	j, err := journal.Open(filepath.Join(*dir, "journal"), journal.Options{})
	if err != nil {
		return err
	}
	// The chain, and each checkpoint the controller wrote holding what
	// the records before it fold to, in one read: what `rollbook journal
	// verify` checks.
	a, verr := ctl.AuditCheckpoints(ctx, j, ctl.AuditOptions{Chain: true})
	records, chain := a.Records, "verified"
	switch _, broken := errors.AsType[*ctl.ChainError](verr); {
	case broken:
		chain = "BROKEN: " + verr.Error()
	case verr != nil:
		chain += ", checkpoints BROKEN: " + verr.Error()
		verr = fmt.Errorf("checkpoints: %w", verr)
	default:
		chain += fmt.Sprintf(", checkpoints %v hold the fold of the records before them", a.Checked)
	}
	jerr := journaledContainerChanges(ctx, j, ns, before, notKept, "app")
	j.Close()
	// The same journal, replayed through today's planner, and drawn.
	jdir := filepath.Join(*dir, "journal")
	replayed := "derives exactly the recorded actions"
	if d, rp, _, err := replay(ctx, recordSource{dir: jdir}, "", replayMode{}); err != nil {
		replayed = "failed: " + err.Error()
	} else if d != nil {
		replayed = "DIVERGED: " + d.String()
	} else {
		replayed += " (" + rp.Summary() + ")"
	}
	reportPath := filepath.Join(*dir, "report.html")
	if err := reportCmd(ctx, []string{"--dir", jdir, "--rollout", ns + "/web-v2", "-o", reportPath}); err != nil {
		reportPath = "failed: " + err.Error()
	}
	fmt.Fprintf(out, "\n\033[1mReport\033[0m\n")
	fmt.Fprintf(out, "  rollout          demo/web-v2  phase %v  trace %v\n", final["phase"], final["traceID"])
	fmt.Fprintf(out, "  pods updated     %d of %d in %s (%.1f pods/s), in place: sidecar containers kept %d/%d\n",
		stsObj.Status.UpdatedReplicas, *pods, took.Round(100*time.Millisecond), float64(*pods)/took.Seconds(), len(before)-len(notKept), len(before))
	// Kept means the same pod, and the same containerID and restartCount
	// for every container but app, at the end and in every status the
	// journal holds: what changed is shown, not just counted.
	if jerr != nil {
		fmt.Fprintf(out, "    NOT CHECKED    the journal's statuses: %v\n", jerr)
	}
	lines := notKept.lines()
	for i, l := range lines {
		if i == 5 {
			fmt.Fprintf(out, "    NOT KEPT       ... %d more\n", len(lines)-i)
			break
		}
		fmt.Fprintf(out, "    NOT KEPT       %s\n", l)
	}
	fmt.Fprintf(out, "  StatefulSet      updatedReplicas %d, readyReplicas %d, updateRevision %s\n", stsObj.Status.UpdatedReplicas, stsObj.Status.ReadyReplicas, stsObj.Status.UpdateRevision)
	fmt.Fprintf(out, "  pod writes       %d (%.2f per pod):", total, float64(total)/float64(*pods))
	for _, k := range sortedKeys(writes) {
		fmt.Fprintf(out, "  %s %d", k, writes[k])
	}
	fmt.Fprintf(out, "\n  API reads        0 by the actuator (every read is the watch)\n")
	fmt.Fprintf(out, "  journal          %d records, hash chain %s (%s)\n", records, chain, filepath.Join(*dir, "journal"))
	fmt.Fprintf(out, "  replay           %s\n", replayed)
	fmt.Fprintf(out, "  report           %s   (also: rollbook history|trace --dir %s %s/web-v2)\n", reportPath, jdir, ns)
	fmt.Fprintf(out, "  logs             %s\n", *dir)
	if *stay {
		fmt.Fprintf(out, "\nThe cluster stays up: export KUBECONFIG=%s\nPress Ctrl-C to stop it.\n", c.Kubeconfig)
		<-ctx.Done()
	}
	if verr != nil {
		return errors.New("journal broken: " + verr.Error())
	}
	return nil
}

func diffCounts(now, before map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range now {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// waitBar polls progress until done == total, drawing a bar.
func waitBar(ctx context.Context, out io.Writer, what string, progress func() (done, total int, label string, err error)) error {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		done, total, label, err := progress()
		if err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintln(out)
			return err
		}
		if total > 0 {
			const width = 40
			done = max(done, 0)
			filled := min(width, done*width/total)
			fmt.Fprintf(out, "\r    [%s%s] %4d/%-4d %s  %s\033[K", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total, what, label)
			if done >= total {
				fmt.Fprintln(out)
				return nil
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(out)
			return fmt.Errorf("%s: still %d/%d after 15m", what, done, total)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func demoStatefulSet(replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app": "web"}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ReadinessGates: []corev1.PodReadinessGate{{ConditionType: planner.GateCondition}},
					Containers: []corev1.Container{
						{Name: "app", Image: "registry.example/app:v1"},
						{Name: "log", Image: "registry.example/log-shipper:v1"},
					},
				},
			},
		},
	}
}

func demoRollout(maxUnavailable string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rollbook.dev/v1alpha1", "kind": "InPlaceRollout",
		"metadata": map[string]any{"name": "web-v2"},
		"spec": map[string]any{
			"target": map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}},
			"strategy": map[string]any{
				"maxUnavailable":     maxUnavailable,
				"gracePeriodSeconds": int64(1),
				"scatter":            []any{map[string]any{"key": "topology.kubernetes.io/zone"}},
				"steps":              []any{map[string]any{"percent": int64(10), "pauseSeconds": int64(2)}, map[string]any{"percent": int64(100)}},
			},
		},
	}}
}
