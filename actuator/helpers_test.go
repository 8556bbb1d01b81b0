package actuator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
)

const wait = 30 * time.Second

// requestLog records every HTTP request an actuator sends, through the
// rest.Config transport: what the zero-reads invariant is about.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "METHOD path"
	// onRequest, when set, runs as each request leaves.
	onRequest func(*http.Request)
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return rtFunc(func(req *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, req.Method+" "+req.URL.Path)
		hook := l.onRequest
		l.mu.Unlock()
		if hook != nil {
			hook(req)
		}
		return rt.RoundTrip(req)
	})
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// env is one test's actuator, journal and clients.
type env struct {
	t    *testing.T
	c    *cluster.Cluster
	ns   string
	cs   kubernetes.Interface // admin, for setup and assertions
	dyn  dynamic.Interface
	j    *journal.Journal
	act  *actuator.Actuator
	reqs *requestLog
	now  time.Time
	seq  uint64
}

// newEnv gives t a namespace, a journal and an actuator whose every request
// is logged. cfg is the actuator's identity (admin when nil).
func newEnv(t *testing.T) *env {
	t.Helper()
	c := cluster.Shared(t)
	e := &env{t: t, c: c, ns: c.Namespace(t), cs: c.Clientset(), reqs: &requestLog{},
		now: time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)}
	var err error
	if e.dyn, err = dynamic.NewForConfig(c.Config()); err != nil {
		t.Fatal(err)
	}
	if e.j, err = journal.Open(t.TempDir(), journal.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.j.Close() })
	e.act = e.newActuator(c.Config())
	return e
}

func (e *env) newActuator(cfg *rest.Config) *actuator.Actuator {
	e.t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(e.reqs.wrap)
	a, err := actuator.New(actuator.Options{
		Config:  cfg,
		Journal: e.j,
		QPS:     100, Burst: 100,
		Clock: func() time.Time { return e.now },
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// do runs act and checks that the journal holds its intent and then its
// outcome, and that the outcome has the class want ("" for success).
func (e *env) do(act planner.Action, want string) journal.ActionFact {
	e.t.Helper()
	e.seq++
	fact, err := e.act.Do(context.Background(), act, e.seq, 1)
	if errors.Is(err, actuator.ErrJournal) {
		e.t.Fatalf("%s: %v", act, err)
	}
	if fact.Class != want {
		e.t.Fatalf("%s: class %q, want %q (err %v: %s)", act, fact.Class, want, err, statusJSON(err))
	}
	if (err == nil) != (want == "") {
		e.t.Fatalf("%s: err %v with class %q", act, err, fact.Class)
	}
	if err != nil {
		e.t.Logf("%s -> %s: %s", act.Kind, fact.Class, statusJSON(err))
	}
	e.checkJournal(act, fact)
	return fact
}

// statusJSON renders an API error's Status: what the apiserver answered.
func statusJSON(err error) string {
	if err == nil {
		return ""
	}
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		return err.Error()
	}
	st := s.Status()
	b, _ := json.Marshal(struct {
		Code    int32                 `json:"code"`
		Reason  metav1.StatusReason   `json:"reason"`
		Message string                `json:"message"`
		Details *metav1.StatusDetails `json:"details,omitempty"`
	}{st.Code, st.Reason, st.Message, st.Details})
	return string(b)
}

// checkJournal finds the last records with the action's key: an intent
// carrying the action, immediately followed (for this test's sequential
// Do calls) by the outcome returned.
func (e *env) checkJournal(act planner.Action, fact journal.ActionFact) {
	e.t.Helper()
	var recs []journal.Record
	err := e.j.Read(context.Background(), 1, func(r journal.Record) error {
		if r.Key == act.Key() {
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(recs) < 2 {
		e.t.Fatalf("journal holds %d records for %s, want intent and outcome", len(recs), act.Key())
	}
	in, out := recs[len(recs)-2], recs[len(recs)-1]
	if in.Kind != journal.KindActionIntended {
		e.t.Fatalf("record %d for %s is %s, want ActionIntended before the outcome", in.Seq, act.Key(), in.Kind)
	}
	wantOut := journal.KindActionSucceeded
	if fact.Class != "" {
		wantOut = journal.KindActionFailed
	}
	if out.Kind != wantOut || out.Seq != in.Seq+1 {
		e.t.Fatalf("records %d,%d for %s: %s then %s, want ActionIntended then %s", in.Seq, out.Seq, act.Key(), in.Kind, out.Kind, wantOut)
	}
	var intent, outcome journal.ActionFact
	if err := in.Decode(&intent); err != nil {
		e.t.Fatal(err)
	}
	if err := out.Decode(&outcome); err != nil {
		e.t.Fatal(err)
	}
	var got planner.Action
	if err := journal.DecodeBody(intent.Action, &got); err != nil {
		e.t.Fatalf("intent's action: %v", err)
	}
	// Deterministic CBOR: equal actions encode to equal bytes.
	again, err := journal.EncodeBody(got)
	if err != nil {
		e.t.Fatal(err)
	}
	want, _ := journal.EncodeBody(act)
	if !bytes.Equal(again, want) || got.Key() != act.Key() {
		e.t.Fatalf("intent carries %+v, want %+v", got, act)
	}
	if intent.Key != act.Key() || outcome.Key != act.Key() || intent.PlanSeq != e.seq || intent.Attempt != 1 {
		e.t.Fatalf("intent %+v / outcome %+v: keys or plan sequence do not match %s, seq %d", intent, outcome, act.Key(), e.seq)
	}
	if outcome.Class != fact.Class || outcome.ResultVersion != fact.ResultVersion || outcome.Error != fact.Error {
		e.t.Fatalf("journaled outcome %+v, Do returned %+v", outcome, fact)
	}
}

// pod is a pod no scheduler or kubelet touches: every write to it is the
// test's or the actuator's.
func (e *env) pod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "keep"}},
		Spec: corev1.PodSpec{
			SchedulerName:  "none",
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: planner.GateCondition}},
			InitContainers: []corev1.Container{{Name: "init", Image: "rollbook.local/init:v1"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "rollbook.local/app:v1", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				}},
				{Name: "sidecar", Image: "rollbook.local/sidecar:v1"},
			},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	p, err := e.cs.CoreV1().Pods(e.ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) get(name string) *corev1.Pod {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) ref(name string) string { return e.ns + "/" + name }

// deleteNow deletes a pod and waits until it is gone.
func (e *env) deleteNow(name string) {
	e.t.Helper()
	zero := int64(0)
	err := e.cs.CoreV1().Pods(e.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	cluster.Eventually(e.t, wait, "pod "+name+" deleted", func() error {
		_, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// eventsBetween watches the pod from resourceVersion from and returns the
// watch events up to and including the one at resourceVersion to: how many
// times the object changed between the two.
func (e *env) eventsBetween(name, from, to string) []watch.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, err := e.cs.CoreV1().Pods(e.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=" + name,
		ResourceVersion: from,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	defer w.Stop()
	var evs []watch.Event
	for ev := range w.ResultChan() {
		evs = append(evs, ev)
		if p, ok := ev.Object.(*corev1.Pod); ok && p.ResourceVersion == to {
			return evs
		}
	}
	e.t.Fatalf("watch of %s from %s ended before resourceVersion %s (%d events)", name, from, to, len(evs))
	return nil
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// --- InPlaceRollout -------------------------------------------------------

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

var crdOnce sync.Once
var crdErr error

// ensureCRD installs the InPlaceRollout CRD once per control plane: the
// project's deploy/crd.yaml when it exists, a minimal one with the status
// subresource otherwise.
func ensureCRD(t *testing.T, e *env) {
	t.Helper()
	crdOnce.Do(func() { crdErr = installCRD(e) })
	if crdErr != nil {
		t.Fatal(crdErr)
	}
}

func installCRD(e *env) error {
	obj, err := projectCRD()
	if err != nil {
		return err
	}
	if obj == nil {
		obj = minimalCRD()
	}
	_, err = e.dyn.Resource(crdGVR).Create(context.Background(), obj, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the InPlaceRollout CRD: %w", err)
	}
	return cluster.Poll(context.Background(), wait, func() error {
		u, err := e.dyn.Resource(crdGVR).Get(context.Background(), obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return errors.New("CRD not established yet")
	})
}

// projectCRD reads deploy/crd.yaml, the first InPlaceRollout CRD document in
// it, or returns nil when the file does not exist yet.
func projectCRD() (*unstructured.Unstructured, error) {
	src, err := cluster.SourceDir()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(src, "deploy", "crd.yaml"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("deploy/crd.yaml holds no InPlaceRollout CRD")
			}
			return nil, fmt.Errorf("deploy/crd.yaml: %w", err)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "CustomResourceDefinition" && u.GetName() == "inplacerollouts.rollbook.dev" {
			return u, nil
		}
	}
}

func minimalCRD() *unstructured.Unstructured {
	preserve := map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "inplacerollouts.rollbook.dev"},
		"spec": map[string]any{
			"group": "rollbook.dev",
			"scope": "Namespaced",
			"names": map[string]any{"plural": "inplacerollouts", "singular": "inplacerollout", "kind": "InPlaceRollout", "listKind": "InPlaceRolloutList", "shortNames": []any{"ipr"}},
			"versions": []any{map[string]any{
				"name": "v1alpha1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type":       "object",
					"properties": map[string]any{"spec": preserve, "status": preserve},
				}},
			}},
		},
	}}
}

// rollout creates an InPlaceRollout with a spec valid under the project's
// schema (a selector target and one container).
func (e *env) rollout(name string) *unstructured.Unstructured {
	e.t.Helper()
	ensureCRD(e.t, e)
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rollbook.dev/v1alpha1",
		"kind":       "InPlaceRollout",
		"metadata":   map[string]any{"name": name, "namespace": e.ns},
		"spec": map[string]any{
			"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}}},
			"containers": []any{map[string]any{"name": "app", "image": "rollbook.local/app:v2"}},
		},
	}}
	out, err := e.dyn.Resource(actuator.RolloutsGVR).Namespace(e.ns).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) getRollout(name string) *unstructured.Unstructured {
	e.t.Helper()
	u, err := e.dyn.Resource(actuator.RolloutsGVR).Namespace(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
