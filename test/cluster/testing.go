package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// shared is the control plane of the current test package (see Main).
var shared *Cluster

// Main runs a test package against one shared control plane: call it from
// TestMain. Each test takes its own namespace with Namespace.
func Main(m *testing.M) {
	MainWith(m, func(context.Context, *Cluster) (func(), error) { return nil, nil })
}

// Shared returns the package's control plane; it fails the test when
// TestMain did not start one.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if shared == nil {
		t.Fatal("cluster: no shared control plane: call cluster.Main from TestMain (a fuzzing worker starts none: fuzz only what needs no cluster)")
	}
	return shared
}

var nsCounter atomic.Int64
var nsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace for t, named after it, deleted when t ends,
// and returns once pods can be created in it (its default ServiceAccount
// exists). When t fails, the tails of the component logs are printed.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 50 {
		name = name[:50]
	}
	name = fmt.Sprintf("%s-%d", strings.Trim(name, "-"), nsCounter.Add(1))
	ctx := context.Background()
	_, err := c.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:\n%s", c.LogTails(25))
		}
		_ = c.Clientset().CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if err := WaitDefaultServiceAccount(ctx, c.Clientset(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

// Eventually polls cond until it returns nil or timeout passes, then fails
// t with cond's last error. Tests wait with this, never with sleeps.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(context.Background(), timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Poll calls cond every 100 ms until it returns nil or timeout passes.
func Poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
