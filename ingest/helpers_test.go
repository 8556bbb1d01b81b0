package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
)

// unschedulable pods: no scheduler or kubelet touches them, so every change
// the journal sees is one the test made.
func pod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			SchedulerName: "none",
			Containers:    []corev1.Container{{Name: "app", Image: "rollbook.local/app:v1"}},
		},
	}
}

// writes records every resourceVersion the test's own writes produced.
type writes struct {
	mu      sync.Mutex
	rvs     map[string][]string // key → resourceVersions in write order
	deleted map[string]bool
}

func newWrites() *writes { return &writes{rvs: map[string][]string{}, deleted: map[string]bool{}} }

func (w *writes) add(ns, name, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := ingest.Key("pods", ns, name)
	w.rvs[k] = append(w.rvs[k], rv)
}

func (w *writes) del(ns, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deleted[ingest.Key("pods", ns, name)] = true
}

// churn creates n pods, relabels each once and deletes every third, with
// par parallel writers, recording what it wrote.
func churn(ctx context.Context, cs kubernetes.Interface, ns string, n, par int, w *writes) error {
	work := make(chan int)
	errs := make(chan error, par)
	var wg sync.WaitGroup
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("p-%05d", i)
				p, err := cs.CoreV1().Pods(ns).Create(ctx, pod(name, map[string]string{"v": "1"}), metav1.CreateOptions{})
				if err != nil {
					errs <- err
					return
				}
				w.add(ns, name, p.ResourceVersion)
				p, err = cs.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"v":"2"}}}`), metav1.PatchOptions{})
				if err != nil {
					errs <- err
					return
				}
				w.add(ns, name, p.ResourceVersion)
				if i%3 == 0 {
					if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
						errs <- err
						return
					}
					w.del(ns, name)
				}
			}
		}()
	}
	for i := range n {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			wg.Wait()
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// journaled is what the journal holds about pods, for assertions.
type journaled struct {
	rvs      map[string][]string // key → Observed resourceVersions in journal order
	deleted  map[string]int      // key → Deleted records
	vanished map[string]int      // key → Vanished records
	records  uint64
}

func readJournal(t testing.TB, j *journal.Journal) journaled {
	t.Helper()
	got := journaled{rvs: map[string][]string{}, deleted: map[string]int{}, vanished: map[string]int{}}
	err := j.Read(context.Background(), 1, func(r journal.Record) error {
		got.records++
		switch r.Kind {
		case journal.KindObserved:
			var o journal.Observed
			if err := r.Decode(&o); err != nil {
				return err
			}
			if o.Deleted {
				got.deleted[r.Key]++
			} else {
				got.rvs[r.Key] = append(got.rvs[r.Key], o.ResourceVersion)
			}
		case journal.KindVanished:
			got.vanished[r.Key]++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading journal: %v", err)
	}
	return got
}

// check compares the journal with the test's writes: every written version
// journaled exactly once, per object in increasing order, every delete
// journaled once.
func (got journaled) check(w *writes) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, rvs := range got.rvs {
		seen := map[string]bool{}
		prev := int64(-1)
		for _, rv := range rvs {
			if seen[rv] {
				return fmt.Errorf("%s: resourceVersion %s journaled twice", k, rv)
			}
			seen[rv] = true
			n, err := strconv.ParseInt(rv, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: resourceVersion %q: %w", k, rv, err)
			}
			if n <= prev {
				return fmt.Errorf("%s: resourceVersion %d journaled after %d", k, n, prev)
			}
			prev = n
		}
	}
	for k, want := range w.rvs {
		have := map[string]bool{}
		for _, rv := range got.rvs[k] {
			have[rv] = true
		}
		for _, rv := range want {
			if !have[rv] {
				return fmt.Errorf("%s: written resourceVersion %s not journaled (journal has %v)", k, rv, got.rvs[k])
			}
		}
	}
	for k := range w.deleted {
		if n := got.deleted[k] + got.vanished[k]; n != 1 {
			return fmt.Errorf("%s: deleted once, journaled as gone %d times", k, n)
		}
	}
	return nil
}

func podName(i int) string { return fmt.Sprintf("p-%05d", i) }

func deleteNow() metav1.DeleteOptions { return metav1.DeleteOptions{GracePeriodSeconds: new(int64)} }

// churnCreate creates n pods, recording their versions.
func churnCreate(ctx context.Context, c interface{ Clientset() *kubernetes.Clientset }, ns string, n int, w *writes) error {
	cs := c.Clientset()
	for i := range n {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, pod(podName(i), nil), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		w.add(ns, p.Name, p.ResourceVersion)
	}
	return nil
}

// readClient is the client ingest reads with in the controller
// (ingest.NewClient), so these tests run its decoding against the real
// apiserver.
func readClient(t testing.TB, cfg *rest.Config) dynamic.Interface {
	t.Helper()
	c, err := ingest.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
