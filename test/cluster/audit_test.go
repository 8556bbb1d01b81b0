package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
)

// TestAuditLog: with Options.AuditLog the apiserver logs one
// ResponseComplete event per request, and CountAudit counts them by user
// agent, user, verb, resource/subresource and code: successes, a conflict,
// a not-found and an RBAC refusal, each once, as the clients saw them.
// Pod writes are logged with their body (level Request), reads without.
//
// It runs its own control plane: the package's shared one has no audit
// log, as most tests' clusters do not.
func TestAuditLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(t.TempDir(), "cluster"), AuditLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c.AuditLog == "" {
		t.Fatal("Cluster.AuditLog is empty with Options.AuditLog")
	}
	ns := c.Namespace(t)

	const ua = "audit-test/admin"
	cfg := c.Config()
	cfg.UserAgent = ua
	cs := kubernetes.NewForConfigOrDie(cfg)
	pods := cs.CoreV1().Pods(ns)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "audited"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Patch(ctx, "audited", types.MergePatchType, []byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Patch(ctx, "audited", types.StrategicMergePatchType,
		[]byte(`{"status":{"conditions":[{"type":"example.com/Gate","status":"True"}]}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	// pod is the object as created: its resourceVersion is stale now.
	pod.Labels = map[string]string{"stale": "yes"}
	if _, err := pods.Update(ctx, pod, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update with a stale resourceVersion: %v, want a conflict", err)
	}
	if _, err := pods.Patch(ctx, "missing", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("patching a missing pod: %v, want not found", err)
	}
	if _, err := pods.Get(ctx, "audited", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "audited.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "audited"},
		Reason:         "Tested", Message: "audit test", Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A service account without RBAC: refused, and counted under its own
	// user name.
	const saUA = "audit-test/sa"
	saCfg, err := c.ServiceAccountConfig(ctx, ns, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	saCfg.UserAgent = saUA
	_, err = kubernetes.NewForConfigOrDie(saCfg).CoreV1().Pods(ns).Patch(ctx, "audited", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("patch by a service account without RBAC: %v, want forbidden", err)
	}
	if err := pods.Delete(ctx, "audited", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := c.SyncAuditLog(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := cluster.CountAudit(c.AuditLog, func(e *cluster.AuditEvent) bool {
		return strings.HasPrefix(e.UserAgent, "audit-test/")
	})
	if err != nil {
		t.Fatal(err)
	}
	sa := "system:serviceaccount:" + ns + ":nobody"
	want := map[cluster.AuditKey]int64{
		{UserAgent: ua, User: "admin", Verb: "create", Resource: "pods", Code: 201}:       1,
		{UserAgent: ua, User: "admin", Verb: "patch", Resource: "pods", Code: 200}:        1,
		{UserAgent: ua, User: "admin", Verb: "patch", Resource: "pods/status", Code: 200}: 1,
		{UserAgent: ua, User: "admin", Verb: "update", Resource: "pods", Code: 409}:       1,
		{UserAgent: ua, User: "admin", Verb: "patch", Resource: "pods", Code: 404}:        1,
		{UserAgent: ua, User: "admin", Verb: "get", Resource: "pods", Code: 200}:          1,
		{UserAgent: ua, User: "admin", Verb: "create", Resource: "events", Code: 201}:     1,
		{UserAgent: ua, User: "admin", Verb: "delete", Resource: "pods", Code: 200}:       1,
		{UserAgent: saUA, User: sa, Verb: "patch", Resource: "pods", Code: 403}:           1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("counts by user agent, user, verb, resource, code:\n got %s\nwant %s", fmtCounts(got), fmtCounts(want))
	}

	// Levels: a pod write carries its body, a read does not.
	levels := map[string]string{}
	err = cluster.ReadAuditLog(c.AuditLog, func(e *cluster.AuditEvent) error {
		if e.UserAgent == ua && e.Stage == "ResponseComplete" {
			k := e.Verb + " " + e.Resource()
			levels[k] = e.Level
			if e.Level == "Request" && len(e.RequestObject) == 0 && e.Verb != "delete" {
				t.Errorf("%s at level Request has no requestObject", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, lvl := range map[string]string{"patch pods/status": "Request", "patch pods": "Request", "create events": "Request", "get pods": "Metadata"} {
		if levels[k] != lvl {
			t.Errorf("%s logged at level %q, want %s", k, levels[k], lvl)
		}
	}
}

func fmtCounts(m map[cluster.AuditKey]int64) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, fmt.Sprintf("%s %s %s ×%d", k.UserAgent, k.User, k, v))
	}
	slices.Sort(lines)
	return "\n  " + strings.Join(lines, "\n  ")
}
