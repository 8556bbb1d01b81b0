package ingest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestExcludedNamespacesIgnored: a cluster-wide ingester excluding a
// namespace journals no object of it, from the initial list (streaming or
// paginated) nor from the watch, while it journals the others' objects.
// The barrier: the watched pod is created after the excluded one, and a
// watch delivers events in resourceVersion order.
func TestExcludedNamespacesIgnored(t *testing.T) {
	c := cluster.Shared(t)
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		mode ingest.ListMode
	}{{"streaming", ingest.ListAuto}, {"paginated", ingest.ListPaginated}} {
		t.Run(mode.name, func(t *testing.T) {
			watched, excluded := c.Namespace(t), c.Namespace(t)
			create := func(ns, name string) {
				t.Helper()
				if _, err := c.Clientset().CoreV1().Pods(ns).Create(ctx, pod(name, nil), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			create(excluded, "before")
			create(watched, "before")
			j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			in, err := ingest.New(ingest.Options{
				Client: readClient(t, c.Config()), Journal: j, Resources: []ingest.Resource{ingest.Pods},
				ExcludeNamespaces: []string{excluded}, ListMode: mode.mode,
			})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- in.Run(rctx) }()
			defer func() { cancel(); <-done }()
			if err := in.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
			create(excluded, "after")
			create(watched, "after")
			seen := map[string]bool{}
			cluster.Eventually(t, time.Minute, "the watched namespace's pods journaled", func() error {
				clear(seen)
				err := j.Read(ctx, 1, func(r journal.Record) error {
					if r.Kind == journal.KindObserved {
						seen[r.Key] = true
					}
					return nil
				})
				if err != nil {
					return err
				}
				for _, name := range []string{"before", "after"} {
					if !seen[ingest.Key("pods", watched, name)] {
						return errNotYet(watched + "/" + name)
					}
				}
				return nil
			})
			for k := range seen {
				if strings.HasPrefix(k, "pods/"+excluded+"/") {
					t.Errorf("journaled %s of excluded namespace %s", k, excluded)
				}
			}
		})
	}
}

type errNotYet string

func (e errNotYet) Error() string { return string(e) + " not journaled yet" }

// TestExcludeNamespacesChecked: an excluded namespace that is no name, or
// one also listed in Namespaces, is refused with a message.
func TestExcludeNamespacesChecked(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	client := readClient(t, cluster.Shared(t).Config())
	for _, tc := range []struct {
		watch, exclude []string
		want           string
	}{
		{nil, []string{"Kube_System"}, `excluded namespace "Kube_System"`},
		{[]string{"shop", "kube-system"}, []string{"kube-system"}, "namespace kube-system is both watched and excluded"},
	} {
		_, err := ingest.New(ingest.Options{Client: client, Journal: j, Resources: []ingest.Resource{ingest.Pods}, Namespaces: tc.watch, ExcludeNamespaces: tc.exclude})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(namespaces %v, exclude %v) = %v, want an error saying %q", tc.watch, tc.exclude, err, tc.want)
		}
	}
}

// TestExcludeEveryResource: every namespaced resource the controller
// watches takes the exclusion's field selector (the apiserver would refuse
// a field it cannot select on, and that stream would never sync), in both
// list modes.
func TestExcludeEveryResource(t *testing.T) {
	c := cluster.Shared(t)
	ctx := context.Background()
	if err := deploy.ApplyCRD(ctx, c.Config()); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []ingest.ListMode{ingest.ListAuto, ingest.ListPaginated} {
		j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		in, err := ingest.New(ingest.Options{
			Client: readClient(t, c.Config()), Journal: j, ListMode: mode,
			Resources:         []ingest.Resource{ingest.Pods, ingest.StatefulSets, ingest.DaemonSets, ingest.ControllerRevisions, ingest.Nodes, ingest.Rollouts},
			ExcludeNamespaces: []string{"kube-system", "kube-public"},
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- in.Run(rctx) }()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err = in.WaitSynced(wctx)
		wcancel()
		cancel()
		<-done
		j.Close()
		if err != nil {
			t.Fatalf("list mode %d: the streams did not sync with namespaces excluded: %v", mode, err)
		}
	}
}
