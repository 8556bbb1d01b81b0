package tracing

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// gotSpan is a span as a test looks at it, whether built here or decoded
// from an OTLP request, so one set of checks serves both.
type gotSpan struct {
	TraceID, SpanID, Parent string // hex; Parent "" for a root
	Name, Kind              string
	Start, End              time.Time
	Attrs                   map[string]string
	Events                  []string
	Links                   []string
	Status, StatusDesc      string
	Resource                map[string]string
	Scope                   string
}

func sdkSpan(s sdktrace.ReadOnlySpan) gotSpan {
	g := gotSpan{
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Name:    s.Name(),
		Kind:    "SPAN_KIND_" + strings.ToUpper(s.SpanKind().String()),
		Start:   s.StartTime().UTC(),
		End:     s.EndTime().UTC(),
		Attrs:   map[string]string{},
		Scope:   s.InstrumentationScope().Name,
	}
	if s.Parent().IsValid() {
		g.Parent = s.Parent().SpanID().String()
	}
	for _, kv := range s.Attributes() {
		g.Attrs[string(kv.Key)] = valueString(kv.Value)
	}
	for _, e := range s.Events() {
		g.Events = append(g.Events, e.Name)
	}
	for _, l := range s.Links() {
		g.Links = append(g.Links, l.SpanContext.SpanID().String())
	}
	switch s.Status().Code {
	case codes.Error:
		g.Status = "Error"
	case codes.Ok:
		g.Status = "Ok"
	default:
		g.Status = "Unset"
	}
	g.StatusDesc = s.Status().Description
	return g
}

func valueString(v attribute.Value) string {
	switch v.Type() {
	case attribute.STRINGSLICE:
		return "[" + strings.Join(v.AsStringSlice(), ",") + "]"
	case attribute.INT64:
		return strconv.FormatInt(v.AsInt64(), 10)
	}
	return v.Emit()
}

func sdkSpans(spans []sdktrace.ReadOnlySpan) []gotSpan {
	out := make([]gotSpan, len(spans))
	for i, s := range spans {
		out[i] = sdkSpan(s)
	}
	return out
}

// clock is the journal's clock: tests move it by hand, so record times
// (and so span times) are known exactly.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// world writes a journal the way ingest, the planner loop and the actuator
// do: Observed records, Ticks, a plan's intents in one append, outcomes.
type world struct {
	t     *testing.T
	dir   string
	j     *journal.Journal
	clock *clock
	// onOpen, if set, is told of each journal opened (the first and after
	// every restart).
	onOpen func(*journal.Journal)
	acts   []*act
	pods   map[string]string // pod "ns/name" → UID
}

// act is one intended action and what became of it.
type act struct {
	action     planner.Action
	fact       journal.ActionFact // the intent as journaled
	seq        uint64             // intent record
	at         time.Time
	outSeq     uint64 // outcome record, 0 while none
	outAt      time.Time
	outKind    journal.Kind
	class, err string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), clock: &clock{t: t0}, pods: map[string]string{}}
	w.open()
	t.Cleanup(func() { w.j.Close() })
	return w
}

func (w *world) open() {
	w.t.Helper()
	j, err := journal.Open(w.dir, journal.Options{Now: w.clock.now})
	if err != nil {
		w.t.Fatal(err)
	}
	w.j = j
	if w.onOpen != nil {
		w.onOpen(j)
	}
}

// restart is a controller restart: the journal is closed with whatever
// intents were in flight, reopened, and those intents are journaled as
// abandoned, as the controller's abandonDangling does.
func (w *world) restart(downtime time.Duration) {
	w.t.Helper()
	if err := w.j.Close(); err != nil {
		w.t.Fatal(err)
	}
	w.clock.advance(downtime)
	w.open()
	for _, a := range w.acts {
		if a.outSeq == 0 {
			w.outcome(a, journal.KindActionFailed, "", journal.ClassAbandoned, "the controller stopped before the outcome was known")
		}
	}
}

func (w *world) append(es ...journal.Entry) []journal.Record {
	w.t.Helper()
	recs, err := w.j.Append(context.Background(), nil, es...)
	if err != nil {
		w.t.Fatal(err)
	}
	return recs
}

func (w *world) lastSeq() uint64 { s, _ := w.j.Last(); return s }

func (w *world) encode(v any) []byte {
	w.t.Helper()
	b, err := journal.EncodeBody(v)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

func (w *world) observe(o journal.Observed) journal.Record {
	w.t.Helper()
	key := o.Resource + "/" + o.Namespace + "/" + o.Name
	return w.append(journal.Entry{Kind: journal.KindObserved, Key: key, Body: w.encode(&o)})[0]
}

func (w *world) observePod(key, uid, image string, rv int) {
	ns, name, _ := strings.Cut(key, "/")
	w.pods[key] = uid
	w.observe(journal.Observed{
		Resource: "pods", Namespace: ns, Name: name, UID: uid, ResourceVersion: strconv.Itoa(rv),
		Labels: map[string]string{"app": strings.TrimRight(name, "-0123456789")},
		Pod: &journal.PodFacts{
			NodeName: "node-a", Phase: "Running", ReadinessGates: []string{planner.GateCondition},
			Containers: []journal.Container{{Name: "app", Image: image, ImageID: "sha256:" + image, Ready: true, Started: true, State: "running"}},
		},
	})
}

func rolloutSpec(image string, percents ...int32) projections.RolloutSpec {
	spec := projections.RolloutSpec{
		Target:     projections.Target{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Containers: []projections.ContainerTarget{{Name: "app", Image: image}},
	}
	for _, p := range percents {
		spec.Strategy.Steps = append(spec.Strategy.Steps, projections.Step{Percent: p})
	}
	return spec
}

func (w *world) observeRollout(key, uid string, rv int, spec projections.RolloutSpec, st *projections.RolloutStatus, deleted bool) journal.Record {
	w.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	o := journal.Observed{Resource: rolloutResource, Namespace: ns, Name: name, UID: uid, ResourceVersion: strconv.Itoa(rv), Generation: 1, Deleted: deleted}
	var err error
	if o.Spec, err = json.Marshal(spec); err != nil {
		w.t.Fatal(err)
	}
	if st != nil {
		if o.Status, err = json.Marshal(st); err != nil {
			w.t.Fatal(err)
		}
	}
	return w.observe(o)
}

func (w *world) tick() {
	w.append(journal.Entry{Kind: journal.KindTick, Key: "tick", Body: w.encode(&journal.TickFact{Reason: "wake"})})
}

// intend journals a plan's intents in one append, derived from everything
// journaled so far, as actuator.Intend does.
func (w *world) intend(actions ...planner.Action) []*act {
	w.t.Helper()
	planSeq := w.lastSeq()
	var es []journal.Entry
	var out []*act
	for _, a := range actions {
		f := journal.ActionFact{
			Key: a.Key(), Kind: string(a.Kind), Rollout: a.Rollout, Pod: a.Pod, UID: a.UID,
			Revision: a.Revision, PlanSeq: planSeq, Attempt: 1, Action: w.encode(a),
		}
		es = append(es, journal.Entry{Kind: journal.KindActionIntended, Key: f.Key, Body: w.encode(f)})
		out = append(out, &act{action: a, fact: f})
	}
	recs := w.append(es...)
	for i, r := range recs {
		out[i].seq, out[i].at = r.Seq, r.Time
	}
	w.acts = append(w.acts, out...)
	return out
}

func (w *world) outcome(a *act, kind journal.Kind, rv, class, msg string) {
	w.t.Helper()
	f := a.fact
	f.Action = nil
	f.ResultVersion, f.Class, f.Error = rv, class, msg
	r := w.append(journal.Entry{Kind: kind, Key: f.Key, Body: w.encode(f)})[0]
	a.outSeq, a.outAt, a.outKind, a.class, a.err = r.Seq, r.Time, kind, class, msg
}

func (w *world) succeed(a *act, rv int) {
	w.outcome(a, journal.KindActionSucceeded, strconv.Itoa(rv), "", "")
}

func (w *world) fail(a *act, class, msg string) {
	w.outcome(a, journal.KindActionFailed, "", class, msg)
}

// Actions as the planner makes them.
func gate(rollout, pod, uid, rev string) planner.Action {
	return planner.Action{Kind: planner.Gate, Rollout: rollout, Pod: pod, UID: uid, Revision: rev,
		Reason: planner.ReasonUpdating, Message: "rollout " + rollout + " revision " + rev}
}

func patch(rollout, pod, uid, rev, from, to string) planner.Action {
	return planner.Action{Kind: planner.Patch, Rollout: rollout, Pod: pod, UID: uid, Revision: rev,
		Images: []planner.ContainerChange{{Name: "app", Index: 0, From: from, To: to}},
		State:  `{"rollout":"` + rollout + `","revision":"` + rev + `"}`}
}

func ungate(rollout, pod, uid, rev string) planner.Action {
	return planner.Action{Kind: planner.Ungate, Rollout: rollout, Pod: pod, UID: uid, Revision: rev,
		Reason: planner.ReasonReady, Message: "revision " + rev + " verified"}
}

func status(rollout, uid string, st projections.RolloutStatus) planner.Action {
	return planner.Action{Kind: planner.Status, Rollout: rollout, RolloutUID: uid, Status: &st}
}

func event(rollout, uid, reason, msg string) planner.Action {
	return planner.Action{Kind: planner.Event, Rollout: rollout, RolloutUID: uid, EventType: "Normal", Reason: reason, Message: msg}
}

// The scenario's names.
const (
	webKey = "shop/web-2-0"
	webUID = "6f1c2b9e-8a34-4d0e-9b7a-2f5d1c0e7a11"
	webRev = "7c9e4f2a"
	apiKey = "shop/api-1"
	apiUID = "0b7d4e21-5c6a-4f8e-a1d3-9e8c7b6a5f40"
	apiRev = "3d2a1f0b"
	img1   = "registry.example/web:1.0"
	img2   = "registry.example/web:2.0"
)

var webPods = []string{"shop/web-0", "shop/web-1", "shop/web-2", "shop/web-3"}

func podUID(key string) string {
	_, name, _ := strings.Cut(key, "/")
	return "uid-" + name + "-4c1e9a7b"
}

// scenario writes a realistic journal: rollout shop/web-2-0 updates four
// pods in two steps (50%, 100%), with a conflict and retry, a controller
// restart that abandons an in-flight patch, a throttled retry after it, and
// success; and rollout shop/api-1, whose only pod's patch is refused as
// invalid, left paused (its trace still open).
func (w *world) scenario() {
	w.t.Helper()
	for _, p := range webPods {
		w.observePod(p, podUID(p), img1, 100)
	}
	w.clock.advance(time.Second)
	spec := rolloutSpec(img2, 50, 100)
	w.observeRollout(webKey, webUID, 200, spec, nil, false)
	w.clock.advance(100 * time.Millisecond)
	w.tick()

	// A new pod no rollout drives yet gets its gate set True: no rollout,
	// so no trace.
	w.observePod("shop/web-4", podUID("shop/web-4"), img1, 101)
	w.succeed(w.intend(planner.Action{Kind: planner.Ungate, Pod: "shop/web-4", UID: podUID("shop/web-4"),
		Reason: planner.ReasonReady, Message: "initial: no update in progress"})[0], 102)

	// Step 0: web-0 and web-1.
	progressing := projections.RolloutStatus{Phase: projections.PhaseProgressing, Replicas: 4, TargetRevision: webRev, TraceID: planner.TraceID(webUID)}
	w.clock.advance(20 * time.Millisecond)
	a := w.intend(gate(webKey, webPods[0], podUID(webPods[0]), webRev), gate(webKey, webPods[1], podUID(webPods[1]), webRev), status(webKey, webUID, progressing))
	w.clock.advance(30 * time.Millisecond)
	w.succeed(a[0], 110)
	w.succeed(a[1], 111)
	w.succeed(a[2], 201)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(webKey, webUID, 201, spec, &progressing, false)

	w.clock.advance(5 * time.Second) // grace
	w.tick()
	b := w.intend(patch(webKey, webPods[0], podUID(webPods[0]), webRev, img1, img2), patch(webKey, webPods[1], podUID(webPods[1]), webRev, img1, img2))
	w.clock.advance(40 * time.Millisecond)
	w.succeed(b[0], 120)
	w.fail(b[1], journal.ClassConflict, `Operation cannot be fulfilled on pods "web-1": the object has been modified; please apply your changes to the latest version and try again`)
	w.clock.advance(200 * time.Millisecond)
	w.observePod(webPods[1], podUID(webPods[1]), img1, 125)
	c := w.intend(patch(webKey, webPods[1], podUID(webPods[1]), webRev, img1, img2))
	w.clock.advance(35 * time.Millisecond)
	w.succeed(c[0], 126)

	w.clock.advance(3 * time.Second) // verify: containers restarted
	w.observePod(webPods[0], podUID(webPods[0]), img2, 130)
	w.observePod(webPods[1], podUID(webPods[1]), img2, 131)
	d := w.intend(ungate(webKey, webPods[0], podUID(webPods[0]), webRev), ungate(webKey, webPods[1], podUID(webPods[1]), webRev))
	w.clock.advance(25 * time.Millisecond)
	w.succeed(d[0], 132)
	w.succeed(d[1], 133)

	// Step 1: the plan gates web-2 and web-3 and, after them in the same
	// append, moves the status to step 1.
	w.clock.advance(time.Second)
	step1 := progressing
	step1.Updated, step1.UpdatedReady, step1.CurrentStep = 2, 2, 1
	e := w.intend(gate(webKey, webPods[2], podUID(webPods[2]), webRev), gate(webKey, webPods[3], podUID(webPods[3]), webRev), status(webKey, webUID, step1))
	w.clock.advance(30 * time.Millisecond)
	w.succeed(e[0], 140)
	w.succeed(e[1], 141)
	w.succeed(e[2], 202)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(webKey, webUID, 202, spec, &step1, false)

	w.clock.advance(5 * time.Second)
	w.tick()
	f := w.intend(patch(webKey, webPods[2], podUID(webPods[2]), webRev, img1, img2), patch(webKey, webPods[3], podUID(webPods[3]), webRev, img1, img2))
	w.clock.advance(40 * time.Millisecond)
	w.succeed(f[1], 150)
	// The controller dies with web-2's patch in flight.
	w.restart(30 * time.Second)

	// The new process relists, sees web-2 unpatched, and patches it again:
	// throttled first, then through.
	w.clock.advance(500 * time.Millisecond)
	w.observeRollout(webKey, webUID, 202, spec, &step1, false)
	w.observePod(webPods[2], podUID(webPods[2]), img1, 151)
	g := w.intend(patch(webKey, webPods[2], podUID(webPods[2]), webRev, img1, img2))
	w.clock.advance(60 * time.Millisecond)
	w.fail(g[0], journal.ClassThrottled, "the server has received too many requests and has asked us to try again later (429)")
	w.clock.advance(time.Second)
	w.tick()
	h := w.intend(patch(webKey, webPods[2], podUID(webPods[2]), webRev, img1, img2))
	w.clock.advance(45 * time.Millisecond)
	w.succeed(h[0], 152)

	w.clock.advance(3 * time.Second)
	w.observePod(webPods[2], podUID(webPods[2]), img2, 160)
	w.observePod(webPods[3], podUID(webPods[3]), img2, 161)
	i := w.intend(ungate(webKey, webPods[2], podUID(webPods[2]), webRev), ungate(webKey, webPods[3], podUID(webPods[3]), webRev))
	w.clock.advance(25 * time.Millisecond)
	w.succeed(i[0], 162)
	w.succeed(i[1], 163)

	// Done.
	w.clock.advance(500 * time.Millisecond)
	done := step1
	done.Phase, done.Updated, done.UpdatedReady = projections.PhaseSucceeded, 4, 4
	k := w.intend(status(webKey, webUID, done), event(webKey, webUID, "Succeeded", "revision "+webRev))
	w.clock.advance(20 * time.Millisecond)
	w.succeed(k[0], 203)
	w.succeed(k[1], 0)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(webKey, webUID, 203, spec, &done, false)

	// shop/api-1: one pod, a patch the server refuses; left paused.
	w.clock.advance(2 * time.Second)
	api := projections.RolloutSpec{
		Target:     projections.Target{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}},
		Containers: []projections.ContainerTarget{{Name: "app", Image: "registry.example/api:bad tag"}},
	}
	w.observePod("shop/api-0", podUID("shop/api-0"), "registry.example/api:1.0", 300)
	w.observeRollout(apiKey, apiUID, 400, api, nil, false)
	l := w.intend(gate(apiKey, "shop/api-0", podUID("shop/api-0"), apiRev))
	w.clock.advance(20 * time.Millisecond)
	w.succeed(l[0], 301)
	w.clock.advance(5 * time.Second)
	m := w.intend(patch(apiKey, "shop/api-0", podUID("shop/api-0"), apiRev, "registry.example/api:1.0", "registry.example/api:bad tag"))
	w.clock.advance(15 * time.Millisecond)
	w.fail(m[0], journal.ClassInvalid, `Pod "api-0" is invalid: spec.containers[0].image: Invalid value: "registry.example/api:bad tag"`)
	paused := projections.RolloutStatus{Phase: projections.PhasePaused, Replicas: 1, TargetRevision: apiRev}
	w.clock.advance(10 * time.Millisecond)
	n := w.intend(status(apiKey, apiUID, paused))
	w.succeed(n[0], 401)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(apiKey, apiUID, 401, api, &paused, false)
}

// scenarioUIDs are the UIDs of the scenario's rollouts.
var scenarioUIDs = map[string]string{webKey: webUID, apiKey: apiUID}

// checkTrees checks that spans form one tree per trace: every parent is in
// the set and in the same trace, there is exactly one root per trace, its
// trace ID is planner.TraceID of the rollout's UID, and span IDs are
// unique. Returns the spans by ID.
func checkTrees(t *testing.T, spans []gotSpan) map[string]gotSpan {
	t.Helper()
	byID := map[string]gotSpan{}
	for _, s := range spans {
		if _, dup := byID[s.SpanID]; dup {
			t.Errorf("span ID %s twice (%s)", s.SpanID, s.Name)
		}
		byID[s.SpanID] = s
	}
	roots := map[string][]gotSpan{}
	for _, s := range spans {
		if s.Parent == "" {
			roots[s.TraceID] = append(roots[s.TraceID], s)
			continue
		}
		p, ok := byID[s.Parent]
		switch {
		case !ok:
			t.Errorf("span %s %q: parent %s not among the spans", s.SpanID, s.Name, s.Parent)
		case p.TraceID != s.TraceID:
			t.Errorf("span %s %q: parent %s in trace %s, span in %s", s.SpanID, s.Name, s.Parent, p.TraceID, s.TraceID)
		}
	}
	traces := map[string]bool{}
	for _, s := range spans {
		traces[s.TraceID] = true
	}
	for tid := range traces {
		rs := roots[tid]
		if len(rs) != 1 {
			t.Errorf("trace %s has %d roots, want 1", tid, len(rs))
			continue
		}
		uid := rs[0].Attrs[AttrRolloutUID]
		if want := planner.TraceID(uid); tid != want {
			t.Errorf("trace %s of rollout %s: want planner.TraceID = %s", tid, uid, want)
		}
	}
	return byID
}

// checkActions checks that every action the scenario intended for a
// rollout has exactly its span: the ID derived from the fact, the right
// parent, the record times, attributes, outcome, status and events.
func checkActions(t *testing.T, acts []*act, uids map[string]string, byID map[string]gotSpan) {
	t.Helper()
	tries := map[string]int{} // since the key last succeeded
	succeeded := map[string]bool{}
	prev := map[string]string{}
	for _, a := range acts {
		f := a.fact
		uid, ok := uids[f.Rollout]
		if !ok {
			continue
		}
		id := ActionSpanID(uid, f.Key, f.PlanSeq, f.Attempt).String()
		if succeeded[f.Key] {
			tries[f.Key] = 0
		}
		tries[f.Key]++
		succeeded[f.Key] = a.outKind == journal.KindActionSucceeded
		s, ok := byID[id]
		if !ok {
			t.Errorf("no span for %s intended at %d", f.Key, a.seq)
			continue
		}
		where := fmt.Sprintf("span %s (%s at %d)", id, f.Key, a.seq)
		if s.TraceID != RolloutTraceID(uid).String() {
			t.Errorf("%s: trace %s, want %s", where, s.TraceID, RolloutTraceID(uid))
		}
		if f.Pod == "" {
			if s.Parent != RolloutSpanID(uid).String() {
				t.Errorf("%s: parent %s, want the rollout %s", where, s.Parent, RolloutSpanID(uid))
			}
		} else {
			// Under its pod's span for the run it belongs to.
			p := byID[s.Parent]
			run, _ := strconv.Atoi(p.Attrs[AttrRun])
			if p.Name != "pod "+f.Pod || p.Attrs[AttrPodUID] != f.UID || s.Parent != PodSpanID(uid, f.UID, run).String() {
				t.Errorf("%s: parent %s %q (run %d), want the pod's span", where, s.Parent, p.Name, run)
			}
		}
		if s.Name != f.Kind || s.Kind != "SPAN_KIND_CLIENT" {
			t.Errorf("%s: name %q kind %s, want %q client", where, s.Name, s.Kind, f.Kind)
		}
		wantAttrs := map[string]string{
			AttrRollout:    f.Rollout,
			AttrRolloutUID: uid,
			AttrAction:     a.action.String(),
			AttrActionKind: f.Kind,
			AttrActionKey:  f.Key,
			AttrRevision:   f.Revision,
			AttrPlanSeq:    strconv.FormatUint(f.PlanSeq, 10),
			AttrSeq:        strconv.FormatUint(a.seq, 10),
			AttrAttempt:    "1",
			AttrTry:        strconv.Itoa(tries[f.Key]),
		}
		if f.Pod != "" {
			wantAttrs[AttrPod] = f.Pod
			wantAttrs[AttrPodUID] = f.UID
			wantAttrs[AttrPodName] = strings.TrimPrefix(f.Pod, "shop/")
		}
		if f.Kind == string(planner.Patch) {
			c := a.action.Images[0]
			wantAttrs[AttrContainers] = "[" + c.Name + "]"
			wantAttrs[AttrImagesFrom] = "[" + c.From + "]"
			wantAttrs[AttrImagesTo] = "[" + c.To + "]"
		}
		if !s.Start.Equal(a.at) {
			t.Errorf("%s: starts %v, want the intent's %v", where, s.Start, a.at)
		}
		switch {
		case a.outSeq == 0:
			wantAttrs[AttrOutcome] = OutcomePending
		case a.outKind == journal.KindActionSucceeded:
			wantAttrs[AttrOutcome] = OutcomeSucceeded
			wantAttrs[AttrOutcomeSeq] = strconv.FormatUint(a.outSeq, 10)
			if s.Status != "Unset" {
				t.Errorf("%s: status %s, want Unset", where, s.Status)
			}
		default:
			wantAttrs[AttrOutcome] = OutcomeFailed
			if a.class == journal.ClassAbandoned {
				wantAttrs[AttrOutcome] = OutcomeAbandoned
			}
			wantAttrs[AttrOutcomeSeq] = strconv.FormatUint(a.outSeq, 10)
			wantAttrs[AttrErrorClass] = a.class
			if s.Status != "Error" || s.StatusDesc != a.class+": "+a.err {
				t.Errorf("%s: status %s %q, want Error %q", where, s.Status, s.StatusDesc, a.class+": "+a.err)
			}
		}
		if a.outSeq != 0 && !s.End.Equal(a.outAt) {
			t.Errorf("%s: ends %v, want the outcome's %v", where, s.End, a.outAt)
		}
		for k, v := range wantAttrs {
			if got, ok := s.Attrs[k]; !ok || got != v {
				t.Errorf("%s: %s = %q, want %q", where, k, got, v)
			}
		}
		wantEvents := []string(nil)
		if tries[f.Key] > 1 {
			wantEvents = append(wantEvents, EventRetry)
			if len(s.Links) != 1 || s.Links[0] != prev[f.Key] {
				t.Errorf("%s: links %v, want the previous attempt %s", where, s.Links, prev[f.Key])
			}
		}
		switch a.class {
		case journal.ClassConflict:
			wantEvents = append(wantEvents, EventConflict)
		case journal.ClassAbandoned:
			wantEvents = append(wantEvents, EventAbandoned)
		}
		if fmt.Sprint(s.Events) != fmt.Sprint(wantEvents) {
			t.Errorf("%s: events %v, want %v", where, s.Events, wantEvents)
		}
		prev[f.Key] = id
	}
}

// find returns the spans named name.
func find(spans []gotSpan, name string) []gotSpan {
	var out []gotSpan
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func only(t *testing.T, spans []gotSpan, name, traceID string) gotSpan {
	t.Helper()
	var out []gotSpan
	for _, s := range find(spans, name) {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d spans %q in trace %s, want 1", len(out), name, traceID)
	}
	return out[0]
}
