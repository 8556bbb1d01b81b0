package lean

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// KubeletVersion is what the simulated nodes report as their kubelet and
// runtime versions.
const KubeletVersion = "lean"

// nodeConditions are the conditions a healthy kubelet reports.
var nodeConditions = []corev1.NodeCondition{
	{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
	{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
	{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
	{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: "RouteCreated", Message: "simulated node network"},
}

// syncNode keeps one node alive: its status Ready (written when it is not,
// and every HeartbeatPeriod) and its Lease renewed every quarter of
// LeaseDuration, which is what the node lifecycle controller watches: a
// node whose Lease is renewed stays Ready and untainted. It queues the
// node again for whichever is due next.
func (k *Kubelet) syncNode(ctx context.Context, name string) error {
	nd := k.node(name)
	if nd == nil {
		return nil
	}
	now := time.Now()
	k.mu.Lock()
	beat, lease := k.beats[name], k.leases[name]
	k.mu.Unlock()
	if beat.IsZero() || now.Sub(beat) >= k.cfg.HeartbeatPeriod || !nodeReady(nd) {
		if err := k.patchNode(ctx, nd, now); err != nil {
			return err
		}
		beat = now
	}
	renew := k.cfg.LeaseDuration / 4
	if lease == nil || lease.Spec.RenewTime == nil || now.Sub(lease.Spec.RenewTime.Time) >= renew {
		var err error
		if lease, err = k.renewLease(ctx, nd, lease, now); err != nil {
			return err
		}
	}
	k.mu.Lock()
	k.beats[name], k.leases[name] = beat, lease
	k.mu.Unlock()
	k.nodeQ.AddAfter(name, min(time.Until(beat.Add(k.cfg.HeartbeatPeriod)), time.Until(lease.Spec.RenewTime.Add(renew))))
	return nil
}

func nodeReady(nd *corev1.Node) bool {
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// patchNode reports the node's status: its conditions with a fresh
// heartbeat; on the first report also its addresses, node info and, when
// the node was created without them, capacity.
func (k *Kubelet) patchNode(ctx context.Context, nd *corev1.Node, now time.Time) error {
	stamp := metav1.NewTime(now)
	var conds []corev1.NodeCondition
	for _, c := range nodeConditions {
		c.LastHeartbeatTime, c.LastTransitionTime = stamp, stamp
		for _, old := range nd.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	status := map[string]any{"conditions": conds, "phase": corev1.NodeRunning}
	if len(nd.Status.Addresses) == 0 {
		status["addresses"] = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeIP(nd)},
			{Type: corev1.NodeHostName, Address: nd.Name},
		}
	}
	if nd.Status.NodeInfo.KubeletVersion == "" {
		status["nodeInfo"] = corev1.NodeSystemInfo{
			Architecture: "amd64", OperatingSystem: "linux", KubeletVersion: KubeletVersion,
			ContainerRuntimeVersion: KubeletVersion, KernelVersion: KubeletVersion, OSImage: KubeletVersion,
		}
	}
	if len(nd.Status.Capacity) == 0 {
		rl := corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("250"),
		}
		status["capacity"], status["allocatable"] = rl, rl
	}
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("lean: %w", err)
	}
	if _, err := k.cs.CoreV1().Nodes().Patch(ctx, nd.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("lean: node %s status: %w", nd.Name, err)
	}
	k.stats.nodePatches.Add(1)
	return nil
}

// renewLease writes the node's Lease in kube-node-lease with a fresh
// renewTime: an update of the copy last written, or after a conflict (or
// at start) of the one read now, or a create. The Lease is owned by the
// node, as the kubelet's is, so it goes with the node.
func (k *Kubelet) renewLease(ctx context.Context, nd *corev1.Node, last *coordinationv1.Lease, now time.Time) (*coordinationv1.Lease, error) {
	leases := k.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	if last == nil {
		got, err := leases.Get(ctx, nd.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("lean: lease %s: %w", nd.Name, err)
		default:
			last = got
		}
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: nd.Name, Namespace: corev1.NamespaceNodeLease}}
	if last != nil {
		l = last.DeepCopy()
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: nd.Name, UID: nd.UID}}
	l.Spec.HolderIdentity = &nd.Name
	l.Spec.LeaseDurationSeconds = new(int32(k.cfg.LeaseDuration / time.Second))
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
	var out *coordinationv1.Lease
	var err error
	if last == nil {
		out, err = leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		out, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// Someone else wrote it (a previous fleet): read it again.
			k.mu.Lock()
			delete(k.leases, nd.Name)
			k.mu.Unlock()
		}
		return nil, fmt.Errorf("lean: lease %s: %w", nd.Name, err)
	}
	k.stats.leases.Add(1)
	return out, nil
}

// nodeIP is the node's InternalIP, or one derived from its name in
// 10.255.0.0/16 for a node that reports none yet.
func nodeIP(nd *corev1.Node) string {
	for _, a := range nd.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	h := fnv.New32a()
	h.Write([]byte(nd.Name))
	v := h.Sum32()
	return fmt.Sprintf("10.255.%d.%d", byte(v>>8), max(byte(v), 1))
}
