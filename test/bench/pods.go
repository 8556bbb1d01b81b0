package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
)

func createNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	// Pods are refused until the namespace's default ServiceAccount exists.
	return cluster.WaitDefaultServiceAccount(ctx, cs, name)
}

// barePod is pod i as a StatefulSet named "bench" of a typical service
// makes it (its name, labels, two containers with ports, env, probes and
// resources, the readiness gate), with schedulerName "none" so that no
// scheduler, kubelet or controller ever writes it: what a client holds of
// it is what was created (plus the status setStatus writes).
func barePod(i int) *corev1.Pod {
	name := barePodName(i)
	rq := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	lim := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"app": "web", "tier": "backend",
				"controller-revision-hash":           "web-5d8f7c9b6d",
				"statefulset.kubernetes.io/pod-name": name,
				"apps.kubernetes.io/pod-index":       strconv.Itoa(i),
			},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
		},
		Spec: corev1.PodSpec{
			SchedulerName:  "none",
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: planner.GateCondition}},
			Containers: []corev1.Container{
				{
					Name: "app", Image: "registry.example/app:v1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
					Env: []corev1.EnvVar{
						{Name: "MODE", Value: "production"},
						{Name: "LOG_LEVEL", Value: "info"},
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					},
					Resources: corev1.ResourceRequirements{Requests: rq, Limits: lim},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
						PeriodSeconds: 5,
					},
				},
				{
					Name: "log", Image: "registry.example/log:v1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
				},
			},
		},
	}
}

// barePodName is the name a StatefulSet named "bench" gives its pod i:
// the ordinal unpadded, as its apps.kubernetes.io/pod-index label says.
func barePodName(i int) string { return "bench-" + strconv.Itoa(i) }

// runningStatus is the status a kubelet would have written for a running
// barePod.
func runningStatus(name string, i int) corev1.PodStatus {
	now := metav1.Now()
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	ip := fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)
	cs := func(k int, c, image string) corev1.ContainerStatus {
		yes := true
		return corev1.ContainerStatus{
			Name: c, Image: image, Ready: true, Started: &yes,
			ImageID: "registry.example/" + c + "@sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
			// Each container its own ID, as a runtime gives it.
			ContainerID: fmt.Sprintf("containerd://%064x", i*2+k),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}
	}
	return corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			cond("PodReadyToStartContainers"), cond(corev1.PodInitialized), cond(corev1.PodReady),
			cond(corev1.ContainersReady), cond(corev1.PodScheduled), cond(planner.GateCondition),
		},
		HostIP: "192.168.0.10", HostIPs: []corev1.HostIP{{IP: "192.168.0.10"}},
		PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		StartTime:         &now,
		ContainerStatuses: []corev1.ContainerStatus{cs(0, "app", "registry.example/app:v1"), cs(1, "log", "registry.example/log:v1")},
		QOSClass:          corev1.PodQOSBurstable,
	}
}

// createBarePods creates n barePods named bench-0, bench-1... in ns with
// `parallel` creators, and with status also writes each one's running
// status. Pods that exist are kept.
func createBarePods(ctx context.Context, env *benchEnv, cs kubernetes.Interface, ns string, n, parallel int, status bool) error {
	start := time.Now()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				name := barePodName(i)
				p, err := cs.CoreV1().Pods(ns).Create(ctx, barePod(i), metav1.CreateOptions{})
				if apierrors.IsAlreadyExists(err) {
					p, err = cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				}
				if err == nil && status {
					p.Status = runningStatus(name, i)
					_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
				if err != nil {
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, fmt.Errorf("pod %s: %w", name, err))
					}
					mu.Unlock()
					next.Store(int64(n)) // stop everyone
					return
				}
				if d := done.Add(1); d%2000 == 0 {
					env.logf("  %d/%d pods created", d, n)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	writes := n
	if status {
		writes *= 2
	}
	el := time.Since(start)
	env.logf("created %d pods in %s (%.0f writes/s)", n, el.Round(100*time.Millisecond), float64(writes)/el.Seconds())
	return nil
}

// heap is a snapshot of this process's memory after two GCs.
type heap struct {
	Live   uint64 // bytes of live heap objects marked by the last GC
	InUse  uint64 // bytes in in-use heap spans (MemStats.HeapInuse)
	RSS    uint64 // resident set size (includes C allocations: Pebble's caches)
	Goroot int    // goroutines
}

var heapSamples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
}

func snapshot() heap {
	runtime.GC()
	runtime.GC()
	metrics.Read(heapSamples)
	h := heap{Live: heapSamples[0].Value.Uint64(), InUse: heapSamples[1].Value.Uint64() + heapSamples[2].Value.Uint64(), Goroot: runtime.NumGoroutine()}
	h.RSS, _ = procStatusKB(os.Getpid(), "VmRSS")
	h.RSS *= 1024
	return h
}

// procStatusKB reads a "kB" field of /proc/<pid>/status (VmRSS, VmHWM).
func procStatusKB(pid int, field string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// delta is b-a as a signed number of bytes.
func delta(a, b uint64) float64 { return float64(int64(b) - int64(a)) }
