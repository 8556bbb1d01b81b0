package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/node"
)

// TestRealNodeInPlace runs a StatefulSet on the real kubelet: the rollout
// restarts the app container alone (new imageID and containerID, the
// sidecar and the pod IP kept), drains each pod while gated, and the
// StatefulSet counts every pod updated. Then an image that does not exist
// never verifies, and onFailure Rollback restores the pods in place.
func TestRealNodeInPlace(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	rc := startOTLPReceiver(t)
	r := startController(t, c, dir, ns)
	const replicas = 2
	sts := kwokStatefulSet("real", stsOpts{replicas: replicas, gate: true, image: node.AppV1})
	spec := &sts.Spec.Template.Spec
	spec.NodeSelector = nil
	spec.Containers[1].Image = node.Sidecar
	spec.TerminationGracePeriodSeconds = new(int64)
	realNode.Schedule(spec)
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "real", replicas, 2*time.Minute)
	before := podsByName(t, c, ns)

	setImage(t, c, ns, "real", "app", node.AppV2)
	createRollout(t, c, ns, "real-v2", workloadRollout("real", map[string]any{"maxUnavailable": 1, "gracePeriodSeconds": int64(1)}))
	waitPhase(t, c, ns, "real-v2", "Succeeded", 3*time.Minute)
	cluster.Eventually(t, time.Minute, "updatedReplicas", func() error {
		s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "real", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Status.UpdatedReplicas != replicas || s.Status.ReadyReplicas != replicas {
			return fmt.Errorf("updated %d ready %d", s.Status.UpdatedReplicas, s.Status.ReadyReplicas)
		}
		return nil
	})
	for name, a := range podsByName(t, c, ns) {
		b := before[name]
		if a.UID != b.UID || a.Status.PodIP != b.Status.PodIP {
			t.Fatalf("%s: recreated or new IP", name)
		}
		na, nb := containerStatus(a, "app"), containerStatus(b, "app")
		if na.ImageID == nb.ImageID || na.ContainerID == nb.ContainerID || na.RestartCount != nb.RestartCount+1 {
			t.Fatalf("%s: app not rebuilt: %+v → %+v", name, nb, na)
		}
		if containerStatus(a, "log").ContainerID != containerStatus(b, "log").ContainerID {
			t.Fatalf("%s: sidecar restarted", name)
		}
	}
	r.waitSeen(t, ns+"/real-v2", "Succeeded")
	r.stop(t)
	checkSpans(t, rc, dir, ns+"/real-v2")
	if drained := drainedWhileGated(t, dir); len(drained) != replicas {
		t.Fatalf("pods seen NotReady while gated: %v, want all %d", drained, replicas)
	}

	// A missing image: never verifies, and Rollback puts v2 back in place.
	// The first rollout would keep driving the StatefulSet (and the new
	// one would report Conflict): it goes first.
	if err := dynamic.NewForConfigOrDie(c.Config()).Resource(deploy.InPlaceRollouts).Namespace(ns).Delete(ctx, "real-v2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	startController(t, c, t.TempDir(), ns)
	setImage(t, c, ns, "real", "app", node.Missing)
	createRollout(t, c, ns, "real-missing", workloadRollout("real", map[string]any{"maxUnavailable": 1, "verifyTimeoutSeconds": int64(5), "onFailure": "Rollback"}))
	waitPhase(t, c, ns, "real-missing", "RolledBack", 3*time.Minute)
	cluster.Eventually(t, time.Minute, "pods back on v2 and ready", func() error {
		for name, p := range podsByName(t, c, ns) {
			if p.Spec.Containers[0].Image != node.AppV2 {
				return fmt.Errorf("%s runs %s", name, p.Spec.Containers[0].Image)
			}
		}
		return allReady(c, ns, replicas)
	})
}

// drainedWhileGated lists the pods the journal saw NotReady while their
// gate condition was False: the drain happened before the patch.
func drainedWhileGated(t *testing.T, dir string) []string {
	var out []string
	seen := map[string]bool{}
	walkPods(t, dir, func(name string, conds map[string]string) {
		if conds[planner.GateCondition] == "False" && conds[string(corev1.PodReady)] == "False" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	})
	return out
}
