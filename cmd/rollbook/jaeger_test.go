package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/tracing"
)

// TestTraceInJaeger: a rollout's trace is read back from a real Jaeger
// through its query API by the trace ID in the rollout's status — live,
// as the controller exports it, and after the fact, rebuilt from the
// journal by `rollbook trace --otlp` into a second, empty Jaeger. Both
// hold the same spans: span IDs derive from the journal, not from the
// process that sent them.
func TestTraceInJaeger(t *testing.T) {
	live := cluster.StartJaeger(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", live.OTLP)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	const replicas = 2
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: replicas, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", replicas, 2*time.Minute)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web-v2", workloadRollout("web", map[string]any{"maxUnavailable": 1}))
	st := waitPhase(t, c, ns, "web-v2", "Succeeded", 3*time.Minute)
	if len(st.TraceID) != 32 {
		t.Fatalf("status.traceID %q is not a trace ID", st.TraceID)
	}

	var liveIDs []string
	cluster.Eventually(t, time.Minute, "the rollout's whole trace in Jaeger, live", func() error {
		spans, err := live.Trace(st.TraceID)
		if err != nil {
			return err
		}
		if err := wholeRollout(spans, replicas); err != nil {
			return err
		}
		liveIDs = spanIDs(spans)
		return nil
	})
	r.waitSeen(t, ns+"/web-v2", "Succeeded")
	r.stop(t)

	after := cluster.StartJaeger(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", after.OTLP)
	if err := traceCmd(ctx, []string{"--dir", filepath.Join(dir, "journal"), "--otlp", ns + "/web-v2"}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "the same trace in a second Jaeger, from the journal", func() error {
		spans, err := after.Trace(st.TraceID)
		if err != nil {
			return err
		}
		if err := wholeRollout(spans, replicas); err != nil {
			return err
		}
		if ids := spanIDs(spans); !slices.Equal(ids, liveIDs) {
			return fmt.Errorf("spans rebuilt from the journal %v differ from those exported live %v", ids, liveIDs)
		}
		return nil
	})
}

// wholeRollout checks a rollout's trace as Jaeger returns it: one root
// span, and a gate, a patch and an ungate under every pod.
func wholeRollout(spans []cluster.JaegerSpan, pods int) error {
	roots, acts := 0, map[string]map[string]int{}
	for _, s := range spans {
		if len(s.References) == 0 {
			roots++
		}
		if pod, kind := s.Tag(tracing.AttrPod), s.Tag(tracing.AttrActionKind); pod != "" && kind != "" {
			if acts[pod] == nil {
				acts[pod] = map[string]int{}
			}
			acts[pod][kind]++
		}
	}
	if roots != 1 {
		return fmt.Errorf("%d root spans among %d, want 1", roots, len(spans))
	}
	if len(acts) < pods {
		return fmt.Errorf("actions of %d pods, want %d: %v", len(acts), pods, acts)
	}
	for pod, kinds := range acts {
		if kinds["gate"] == 0 || kinds["patch"] == 0 || kinds["ungate"] == 0 {
			return fmt.Errorf("pod %s: spans %v, want gate, patch and ungate", pod, kinds)
		}
	}
	return nil
}

func spanIDs(spans []cluster.JaegerSpan) []string {
	ids := make([]string, len(spans))
	for i, s := range spans {
		ids[i] = s.SpanID
	}
	sort.Strings(ids)
	return ids
}
