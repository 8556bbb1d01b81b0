package lean

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Config configures a Kubelet. The zero value gives the defaults noted.
type Config struct {
	// NodeAnnotation and NodeAnnotationValue select the nodes this kubelet
	// plays (kwok.x-k8s.io/node=fake by default, the nodes
	// fleet.CreateNodes makes); other nodes and their pods are left alone.
	NodeAnnotation, NodeAnnotationValue string
	Delays                              Delays
	// Workers is how many pods are worked on at once (default 16). A pod
	// is only ever worked on by one worker at a time.
	Workers int
	// LeaseDuration is the node Leases' duration (default 40s); they are
	// renewed every quarter of it, as the kubelet does.
	LeaseDuration time.Duration
	// HeartbeatPeriod is how often node status is reported with the
	// Lease renewed meanwhile (default 1m; the kubelet's is 5m).
	HeartbeatPeriod time.Duration
	Log             *slog.Logger // default slog.Default()
}

func (c Config) withDefaults() Config {
	if c.NodeAnnotation == "" {
		c.NodeAnnotation, c.NodeAnnotationValue = "kwok.x-k8s.io/node", "fake"
	}
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 40 * time.Second
	}
	if c.HeartbeatPeriod <= 0 {
		c.HeartbeatPeriod = time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Stats count what the kubelet did, for tests and benchmarks.
type Stats struct {
	Steps          int64 `json:"steps"`           // pod Steps run
	StatusPatches  int64 `json:"status_patches"`  // pods/status patches that landed
	Conflicts      int64 `json:"conflicts"`       // refused as stale (409): a newer event recomputes
	Deletes        int64 `json:"deletes"`         // pods deleted with grace 0
	Errors         int64 `json:"errors"`          // other failed writes (retried)
	NodePatches    int64 `json:"node_patches"`    // nodes/status patches
	LeaseRenewals  int64 `json:"lease_renewals"`  // Lease creates and updates
	ManagedPods    int64 `json:"managed_pods"`    // pods on managed nodes now
	PendingWakeups int64 `json:"pending_wakeups"` // pods with a delayed transition waiting
}

// Kubelet plays kubelet for every node selected by Config's annotation and
// the pods bound to them. See the package documentation.
type Kubelet struct {
	cs    kubernetes.Interface
	cfg   Config
	pods  cache.SharedIndexInformer
	nodes cache.SharedIndexInformer
	podQ  workqueue.TypedRateLimitingInterface[string]
	nodeQ workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	seen   map[string]podSeen               // by pod key; only the key's worker reads or writes an entry
	leases map[string]*coordinationv1.Lease // by node name, as last written
	beats  map[string]time.Time             // by node name: last status heartbeat written
	ipNext uint32                           // next pod address offset in podCIDR
	synced atomic.Bool
	stats  struct{ steps, patches, conflicts, deletes, errors, nodePatches, leases atomic.Int64 }
}

type podSeen struct {
	uid  types.UID
	seen Seen
}

// podCIDR is where pod addresses are taken from, in order from a random
// start: unique among the pods of one kubelet's life (2^20 of them).
var podCIDR = netip.MustParsePrefix("10.64.0.0/12")

// byNode indexes pods by spec.nodeName.
const byNode = "node"

// New returns a Kubelet on cs; Run starts it.
func New(cs kubernetes.Interface, cfg Config) *Kubelet {
	cfg = cfg.withDefaults()
	k := &Kubelet{
		cs: cs, cfg: cfg,
		podQ:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		nodeQ:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		seen:   map[string]podSeen{},
		leases: map[string]*coordinationv1.Lease{},
		beats:  map[string]time.Time{},
		ipNext: rand.Uint32N(1 << 19),
	}
	// Only bound pods: the scheduler's binding shows as the pod's arrival.
	k.pods = coreinformers.NewFilteredPodInformer(cs, metav1.NamespaceAll, 0, cache.Indexers{
		byNode: func(obj any) ([]string, error) { return []string{obj.(*corev1.Pod).Spec.NodeName}, nil },
	}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	})
	k.nodes = coreinformers.NewNodeInformer(cs, 0, cache.Indexers{})
	// managedFields are never read and are most of a pod's bytes.
	strip := func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}
	_ = k.pods.SetTransform(strip)
	_ = k.nodes.SetTransform(strip)
	return k
}

// Synced reports whether the kubelet has listed the nodes and pods and is
// working on them.
func (k *Kubelet) Synced() bool { return k.synced.Load() }

// Stats returns the counters so far.
func (k *Kubelet) Stats() Stats {
	k.mu.Lock()
	waiting := 0
	for _, s := range k.seen {
		if len(s.seen) > 0 {
			waiting++
		}
	}
	k.mu.Unlock()
	managed := 0
	for _, nd := range k.nodes.GetStore().List() {
		if k.isManaged(nd.(*corev1.Node)) {
			objs, _ := k.pods.GetIndexer().ByIndex(byNode, nd.(*corev1.Node).Name)
			managed += len(objs)
		}
	}
	return Stats{
		Steps: k.stats.steps.Load(), StatusPatches: k.stats.patches.Load(), Conflicts: k.stats.conflicts.Load(),
		Deletes: k.stats.deletes.Load(), Errors: k.stats.errors.Load(), NodePatches: k.stats.nodePatches.Load(),
		LeaseRenewals: k.stats.leases.Load(), ManagedPods: int64(managed), PendingWakeups: int64(waiting),
	}
}

// Run lists and watches nodes and pods and works on them until ctx ends.
func (k *Kubelet) Run(ctx context.Context) error {
	defer k.podQ.ShutDown()
	defer k.nodeQ.ShutDown()
	if _, err := k.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			nd := obj.(*corev1.Node)
			if k.isManaged(nd) {
				k.nodeQ.Add(nd.Name)
				// Pods may have been listed before their node was.
				objs, _ := k.pods.GetIndexer().ByIndex(byNode, nd.Name)
				for _, o := range objs {
					k.enqueuePod(o)
				}
			}
		},
		UpdateFunc: func(_, obj any) {
			if nd := obj.(*corev1.Node); k.isManaged(nd) {
				k.nodeQ.Add(nd.Name)
			}
		},
	}); err != nil {
		return fmt.Errorf("lean: %w", err)
	}
	if _, err := k.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    k.enqueuePod,
		UpdateFunc: func(_, obj any) { k.enqueuePod(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				k.mu.Lock()
				delete(k.seen, key)
				k.mu.Unlock()
			}
		},
	}); err != nil {
		return fmt.Errorf("lean: %w", err)
	}
	go k.nodes.Run(ctx.Done())
	go k.pods.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), k.nodes.HasSynced, k.pods.HasSynced) {
		return fmt.Errorf("lean: informers not synced: %w", ctx.Err())
	}
	k.cfg.Log.Info("synced", "nodes", len(k.nodes.GetStore().ListKeys()), "pods", len(k.pods.GetStore().ListKeys()))
	var wg sync.WaitGroup
	for range k.cfg.Workers {
		wg.Go(func() { work(ctx, k.podQ, k.syncPod) })
	}
	for range 4 {
		wg.Go(func() { work(ctx, k.nodeQ, k.syncNode) })
	}
	k.synced.Store(true)
	<-ctx.Done()
	k.podQ.ShutDown()
	k.nodeQ.ShutDown()
	wg.Wait()
	return nil
}

// work runs sync on q's keys until q shuts down: an error retries the key
// with back-off, success forgets its failures.
func work(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		if err := sync(ctx, key); err != nil && ctx.Err() == nil {
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

func (k *Kubelet) isManaged(nd *corev1.Node) bool {
	return nd.Annotations[k.cfg.NodeAnnotation] == k.cfg.NodeAnnotationValue
}

func (k *Kubelet) node(name string) *corev1.Node {
	obj, ok, _ := k.nodes.GetStore().GetByKey(name)
	if !ok {
		return nil
	}
	if nd := obj.(*corev1.Node); k.isManaged(nd) {
		return nd
	}
	return nil
}

func (k *Kubelet) enqueuePod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || k.node(p.Spec.NodeName) == nil {
		return
	}
	if key, err := cache.MetaNamespaceKeyFunc(p); err == nil {
		k.podQ.Add(key)
	}
}

// syncPod Steps one pod from the informer's latest copy and writes what
// Step decided. Its writes carry the resourceVersion Step read, so a write
// computed from a copy already outdated is refused (409) and dropped: the
// newer event is, or will be, queued and Steps the pod again.
func (k *Kubelet) syncPod(ctx context.Context, key string) error {
	obj, exists, err := k.pods.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil
	}
	pod := obj.(*corev1.Pod)
	nd := k.node(pod.Spec.NodeName)
	if nd == nil {
		return nil
	}
	k.stats.steps.Add(1)
	k.mu.Lock()
	prev := k.seen[key]
	k.mu.Unlock()
	if prev.uid != pod.UID {
		prev = podSeen{uid: pod.UID}
	}
	in := Input{Pod: pod, Now: time.Now(), Seen: prev.seen}
	if pod.Status.PodIP == "" {
		in.PodIP, in.HostIP = k.allocIP(), nodeIP(nd)
	}
	out := Step(in, k.cfg.Delays)
	switch {
	case out.Delete:
		err = k.deletePod(ctx, pod)
	case out.Status != nil:
		err = k.patchStatus(ctx, pod, out.Status)
	}
	if err != nil {
		// What was pending stays pending from when it was first seen.
		for key, t := range prev.seen {
			if _, ok := out.Seen[key]; !ok {
				out.Seen[key] = t
			}
		}
	}
	k.mu.Lock()
	k.seen[key] = podSeen{uid: pod.UID, seen: out.Seen}
	k.mu.Unlock()
	if out.Wake > 0 {
		k.podQ.AddAfter(key, out.Wake)
	}
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		k.stats.conflicts.Add(1)
		return nil
	default:
		k.stats.errors.Add(1)
		k.cfg.Log.Warn("pod write failed; retrying", "pod", key, "err", err)
		return err
	}
}

func (k *Kubelet) deletePod(ctx context.Context, p *corev1.Pod) error {
	err := k.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &p.UID},
	})
	if err == nil {
		k.stats.deletes.Add(1)
	}
	return err
}

// patchStatus writes st as one strategic merge patch on pods/status with
// the resourceVersion of p as its precondition. containerStatuses are an
// atomic list, written in full; conditions merge by type, and only the
// owned ones are written, so the gate conditions stay their owners'.
func (k *Kubelet) patchStatus(ctx context.Context, p *corev1.Pod, st *corev1.PodStatus) error {
	body, err := statusPatch(p, st)
	if err != nil {
		return err
	}
	_, err = k.cs.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
	if err == nil {
		k.stats.patches.Add(1)
	}
	return err
}

// statusPatch is the pods/status patch that turns p's status into st.
func statusPatch(p *corev1.Pod, st *corev1.PodStatus) ([]byte, error) {
	var conds []map[string]any
	for _, t := range OwnedConditions {
		i := conditionIndex(st.Conditions, t)
		if i < 0 {
			continue
		}
		c := st.Conditions[i]
		m := map[string]any{
			"type": c.Type, "status": c.Status, "lastTransitionTime": c.LastTransitionTime,
			// null removes a reason or message an earlier state left: an
			// absent field would be kept by the merge.
			"reason": nilIfEmpty(c.Reason), "message": nilIfEmpty(c.Message),
		}
		if c.ObservedGeneration != 0 {
			m["observedGeneration"] = c.ObservedGeneration
		}
		conds = append(conds, m)
	}
	status := map[string]any{"phase": st.Phase, "conditions": conds, "containerStatuses": st.ContainerStatuses}
	if len(st.InitContainerStatuses) > 0 {
		status["initContainerStatuses"] = st.InitContainerStatuses
	}
	if st.ObservedGeneration != 0 {
		status["observedGeneration"] = st.ObservedGeneration
	}
	if st.StartTime != nil && p.Status.StartTime == nil {
		status["startTime"] = st.StartTime
	}
	// podIPs and hostIPs merge by ip: written only when the pod has none.
	if st.PodIP != "" && p.Status.PodIP == "" {
		status["podIP"], status["podIPs"] = st.PodIP, st.PodIPs
	}
	if st.HostIP != "" && p.Status.HostIP == "" {
		status["hostIP"], status["hostIPs"] = st.HostIP, st.HostIPs
	}
	b, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": p.ResourceVersion},
		"status":   status,
	})
	if err != nil {
		return nil, fmt.Errorf("lean: %w", err)
	}
	return b, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (k *Kubelet) allocIP() string {
	k.mu.Lock()
	n := k.ipNext
	k.ipNext = (k.ipNext + 1) % (1 << (32 - podCIDR.Bits()))
	k.mu.Unlock()
	a := podCIDR.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}
