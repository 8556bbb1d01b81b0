package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/test/cluster"
)

// TestWatchedPodsJournaledAsTheMap: the real apiserver's watch of pods,
// read through ingest's client, delivers each pod typed (decoded once,
// not into a map), and what ingest journals of each pod the apiserver
// serves — of many shapes: init containers, resources in every notation,
// env field references, readiness gates, annotations with characters
// JSON escapes, a kubelet's status, a deletion under way — is byte for
// byte the record the unstructured map gave, object hash included.
func TestWatchedPodsJournaledAsTheMap(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()

	shapes := map[string]func(*corev1.Pod){
		"plain": func(*corev1.Pod) {},
		"resources": func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1.5"), corev1.ResourceMemory: resource.MustParse("0.5Gi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1e9")},
			}
		},
		"init and sidecar": func(p *corev1.Pod) {
			always := corev1.ContainerRestartPolicyAlways
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "rollbook.local/setup:v1"}, {Name: "proxy", Image: "rollbook.local/proxy:v1", RestartPolicy: &always}}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "log", Image: "rollbook.local/log:v1"})
		},
		"env and gates": func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "REV", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['rev']"}}}, {Name: "X", Value: "1"}}
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "rollbook.dev/InPlaceUpdateReady"}}
		},
		"annotations": func(p *corev1.Pod) {
			p.Annotations = map[string]string{
				"rollbook.dev/state": `{"rollout":"shop/web","rev":"web-2","at":1,"before":[{"name":"app","image":"a<b>&c"}]}`,
				"kubectl.kubernetes.io/last-applied-configuration": "{\"note\":\"日本 \u2028 é \\\"q\\\" <tag> &amp;\"}\n",
				"example.com/empty": "",
			}
		},
		"deleting": func(p *corev1.Pod) { p.Finalizers = []string{"example.com/hold"} },
	}
	for name, shape := range shapes {
		p := pod(podNameFor(name), map[string]string{"app": "web", "rev": "1"})
		shape(p)
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A kubelet's status on one, and a deletion under way on another.
	running := podNameFor("plain")
	st := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7", QOSClass: corev1.PodQOSBestEffort,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Unix(1_800_000_000, 0))}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "rollbook.local/app:v1", ImageID: "rollbook.local/app@sha256:0123", Ready: true, RestartCount: 2,
			ContainerID: fmt.Sprintf("containerd://%064x", 7), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(1_800_000_001, 0))}}}}}
	status, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf(`{"status":%s}`, status)
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, running, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	deleting := podNameFor("deleting")
	if err := cs.CoreV1().Pods(ns).Delete(ctx, deleting, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cs.CoreV1().Pods(ns).Patch(context.Background(), deleting, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})

	// Every pod as the apiserver serves it, journaled both ways.
	for name := range shapes {
		raw, err := cs.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").Name(podNameFor(name)).DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		typed, viaMap, ok, err := ingest.CompactBothWays(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !ok {
			t.Fatalf("%s: a pod the apiserver served was left to the map:\n%s", name, raw)
		}
		if !bytes.Equal(typed, viaMap) {
			t.Fatalf("%s: the typed pod's record differs from the map's:\ntyped %x\nmap   %x\nserved %s", name, typed, viaMap, raw)
		}
	}

	// And the watch delivers them typed.
	w, err := readClient(t, c.Config()).Resource(ingest.Pods.GVR).Namespace(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	seen := map[string]bool{}
	deadline := time.After(time.Minute)
	for len(seen) < len(shapes) {
		select {
		case ev := <-w.ResultChan():
			m, ok := ev.Object.(metav1.Object)
			if !ok || !ingest.IsWatchedPod(ev.Object) {
				t.Fatalf("the watch delivered a %T (%s), want a pod decoded typed", ev.Object, ev.Type)
			}
			seen[m.GetName()] = true
		case <-deadline:
			t.Fatalf("the watch delivered %d of %d pods in a minute", len(seen), len(shapes))
		}
	}
}

func podNameFor(shape string) string { return "shape-" + strings.ReplaceAll(shape, " ", "-") }
