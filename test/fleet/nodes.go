package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
)

// NodeName is the name CreateNodes gives the i-th node.
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%04d", i) }

// CreateNodes creates n simulated nodes (NodeName(0..n-1)), zone label
// round robin over zones (Zones when empty), big enough for a few hundred
// pods each and without taints, and waits until every one is Ready and
// schedulable. Nodes that exist already are kept, so calling it again with
// the same n is cheap. A running Fleet makes them Ready; without one this
// waits until ctx ends. It returns the node names.
func CreateNodes(ctx context.Context, client kubernetes.Interface, n int, zones []string) ([]string, error) {
	if len(zones) == 0 {
		zones = Zones
	}
	names := make([]string, n)
	for i := range names {
		names[i] = NodeName(i)
	}
	// A few parallel writers: a thousand nodes one by one would take
	// seconds of round trips.
	work := make(chan int)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for range min(n, 16) {
		wg.Go(func() {
			for i := range work {
				_, err := client.CoreV1().Nodes().Create(ctx, node(names[i], zones[i%len(zones)]), metav1.CreateOptions{})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					errs[i] = fmt.Errorf("fleet: creating node %s: %w", names[i], err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return names, WaitNodesReady(ctx, client, names)
}

func node(name, zone string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				ZoneLabel:     zone,
				HostnameLabel: name,
				TypeLabel:     TypeValue,
				// What DaemonSets commonly select on.
				"kubernetes.io/os":   "linux",
				"kubernetes.io/arch": "amd64",
			},
			Annotations: map[string]string{
				ManagedAnnotation: ManagedValue,
			},
		},
		// Nodes are the one kind whose status may be set on create: kwok's
		// node-initialize stage keeps allocatable and capacity as given.
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// WaitNodesReady waits until every named node is Ready and carries no
// NoSchedule or NoExecute taint (the apiserver puts not-ready:NoSchedule on
// new nodes; the node lifecycle controller lifts it once Ready), so the
// scheduler will place pods on all of them.
func WaitNodesReady(ctx context.Context, client kubernetes.Interface, names []string) error {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	timeout := 2 * time.Minute
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return cluster.Poll(ctx, timeout, func() error {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: TypeLabel + "=" + TypeValue})
		if err != nil {
			return err
		}
		ready := 0
		var notReady string
		for i := range list.Items {
			nd := &list.Items[i]
			if !want[nd.Name] {
				continue
			}
			if err := schedulable(nd); err != nil {
				notReady = err.Error()
				continue
			}
			ready++
		}
		if ready < len(want) {
			return fmt.Errorf("fleet: %d of %d nodes ready and schedulable (e.g. %s)", ready, len(want), notReady)
		}
		return nil
	})
}

func schedulable(nd *corev1.Node) error {
	ready := false
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		return fmt.Errorf("node %s not Ready", nd.Name)
	}
	for _, t := range nd.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return fmt.Errorf("node %s has taint %s:%s", nd.Name, t.Key, t.Effect)
		}
	}
	if nd.Spec.Unschedulable {
		return fmt.Errorf("node %s unschedulable", nd.Name)
	}
	return nil
}
