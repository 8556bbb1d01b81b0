package tracing

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// TestBuildSpanTree: the scenario's journal becomes one tree per rollout,
// rooted at the rollout span with the planner's trace ID, with every
// intended action as a span under its pod (or the rollout), carrying the
// journal's facts; the restart leaves the trace whole.
func TestBuildSpanTree(t *testing.T) {
	w := newWorld(t)
	w.scenario()
	spans, err := Build(context.Background(), w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	got := sdkSpans(spans)
	byID := checkTrees(t, got)
	checkActions(t, w.acts, scenarioUIDs, byID)

	webTrace, apiTrace := RolloutTraceID(webUID).String(), RolloutTraceID(apiUID).String()
	traces := map[string]int{}
	for _, s := range got {
		traces[s.TraceID]++
		if s.Scope != ScopeName {
			t.Errorf("span %q: scope %q", s.Name, s.Scope)
		}
	}
	// web: root, 2 steps, 4 pods, 15 pod actions, 3 status writes, 1 event.
	// api: root, 1 step, 1 pod, gate, patch, status.
	if len(traces) != 2 || traces[webTrace] != 26 || traces[apiTrace] != 6 {
		t.Fatalf("spans per trace %v, want %s:26 %s:6", traces, webTrace, apiTrace)
	}

	// The rollout span: first Observed record → the Observed Succeeded.
	root := only(t, got, "rollout "+webKey, webTrace)
	var first, succeeded time.Time
	err = w.j.Read(context.Background(), 1, func(r journal.Record) error {
		if r.Key != rolloutKeyPrefix+webKey {
			return nil
		}
		if first.IsZero() {
			first = r.Time
		}
		succeeded = r.Time // the last one is the Succeeded status
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if root.SpanID != RolloutSpanID(webUID).String() || !root.Start.Equal(first) || !root.End.Equal(succeeded) {
		t.Errorf("root %s %v..%v, want %s %v..%v", root.SpanID, root.Start, root.End, RolloutSpanID(webUID), first, succeeded)
	}
	if root.Status != "Ok" || root.Attrs[AttrPhase] != projections.PhaseSucceeded || root.Attrs[AttrRevision] != webRev {
		t.Errorf("root status %s attrs %v", root.Status, root.Attrs)
	}

	// Steps: web-0 and web-1 in step 0; web-2 and web-3 in step 1, whose
	// plan moved the status to step 1 only after gating them.
	step0 := only(t, got, "step 0", webTrace)
	step1 := only(t, got, "step 1", webTrace)
	if step0.SpanID != StepSpanID(webUID, 0, 1).String() || step1.SpanID != StepSpanID(webUID, 1, 1).String() {
		t.Errorf("step IDs %s %s", step0.SpanID, step1.SpanID)
	}
	if step0.Parent != root.SpanID || step1.Parent != root.SpanID || !step0.End.Equal(step1.Start) || !step1.End.Equal(root.End) {
		t.Errorf("steps %v..%v, %v..%v under %s %s", step0.Start, step0.End, step1.Start, step1.End, step0.Parent, step1.Parent)
	}
	if step0.Attrs[AttrStepPercent] != "50" || step1.Attrs[AttrStepPercent] != "100" {
		t.Errorf("step percents %q %q", step0.Attrs[AttrStepPercent], step1.Attrs[AttrStepPercent])
	}
	for i, p := range webPods {
		s := only(t, got, "pod "+p, webTrace)
		wantStep := step0
		if i >= 2 {
			wantStep = step1
		}
		if s.SpanID != PodSpanID(webUID, podUID(p), 1).String() || s.Parent != wantStep.SpanID || s.Start.Before(wantStep.Start) {
			t.Errorf("pod %s: span %s under %s from %v, want %s under %s (%s) from %v on",
				p, s.SpanID, s.Parent, s.Start, PodSpanID(webUID, podUID(p), 1), wantStep.SpanID, wantStep.Name, wantStep.Start)
		}
		if s.Attrs[AttrPodUID] != podUID(p) || s.Attrs[AttrOutcome] != OutcomeSucceeded || s.Status != "Unset" || s.Attrs[AttrImagesTo] != "["+img2+"]" {
			t.Errorf("pod %s: status %s attrs %v", p, s.Status, s.Attrs)
		}
	}
	// The pod spans run from the pod's first action to its last.
	for _, p := range webPods {
		s := only(t, got, "pod "+p, webTrace)
		var lo, hi time.Time
		for _, a := range w.acts {
			if a.fact.Pod == p && a.fact.Rollout == webKey {
				if lo.IsZero() {
					lo = a.at
				}
				hi = later(a.outAt, hi)
			}
		}
		if !s.Start.Equal(lo) || !s.End.Equal(hi) {
			t.Errorf("pod %s: %v..%v, want %v..%v", p, s.Start, s.End, lo, hi)
		}
	}

	// The abandoned patch and the patches after the restart share the
	// trace and the pod span; the abandoned one spans the downtime.
	var web2 []gotSpan
	for _, s := range got {
		if s.Name == "patch" && s.Attrs[AttrPod] == "shop/web-2" {
			web2 = append(web2, s)
		}
	}
	if len(web2) != 3 {
		t.Fatalf("%d patch spans for web-2, want 3 (abandoned, throttled, succeeded)", len(web2))
	}
	wantOutcomes := []string{OutcomeAbandoned, OutcomeFailed, OutcomeSucceeded}
	for i, s := range web2 {
		if s.TraceID != webTrace || s.Parent != PodSpanID(webUID, podUID("shop/web-2"), 1).String() || s.Attrs[AttrOutcome] != wantOutcomes[i] {
			t.Errorf("web-2 patch %d: trace %s parent %s outcome %s", i, s.TraceID, s.Parent, s.Attrs[AttrOutcome])
		}
	}
	if d := web2[0].End.Sub(web2[0].Start); d < 30*time.Second {
		t.Errorf("abandoned patch lasted %v, want the 30s downtime in it", d)
	}

	// The api rollout is still open: its spans end at the last record.
	apiRoot := only(t, got, "rollout "+apiKey, apiTrace)
	if apiRoot.Status != "Unset" || apiRoot.Attrs[AttrPhase] != projections.PhasePaused || !apiRoot.End.Equal(w.clock.now()) {
		t.Errorf("api root %s %v ends %v, want open until %v", apiRoot.Status, apiRoot.Attrs, apiRoot.End, w.clock.now())
	}
	apiPod := only(t, got, "pod shop/api-0", apiTrace)
	if apiPod.Status != "Error" || apiPod.Attrs[AttrOutcome] != OutcomeFailed || apiPod.Attrs[AttrFailures] != "1" {
		t.Errorf("api pod: %s %v", apiPod.Status, apiPod.Attrs)
	}
}

// TestBuildDeterministic: the same journal always gives the same spans,
// IDs, times and all, including after the journal is closed and reopened
// (the months-later rebuild); and filtering by rollout gives exactly that
// rollout's spans.
func TestBuildDeterministic(t *testing.T) {
	w := newWorld(t)
	w.scenario()
	ctx := context.Background()
	a, err := Build(ctx, w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(ctx, w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tracetest.SpanStubsFromReadOnlySpans(a), tracetest.SpanStubsFromReadOnlySpans(b)) {
		t.Fatal("two builds of the same journal differ")
	}
	w.restart(0)
	c, err := Build(ctx, w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tracetest.SpanStubsFromReadOnlySpans(a), tracetest.SpanStubsFromReadOnlySpans(c)) {
		t.Fatal("the build after reopening the journal differs")
	}

	web, err := Build(ctx, w.j.Read, webKey)
	if err != nil {
		t.Fatal(err)
	}
	var want []sdktrace.ReadOnlySpan
	for _, s := range a {
		if s.SpanContext().TraceID() == RolloutTraceID(webUID) {
			want = append(want, s)
		}
	}
	if len(web) != 26 || !reflect.DeepEqual(tracetest.SpanStubsFromReadOnlySpans(web), tracetest.SpanStubsFromReadOnlySpans(want)) {
		t.Fatalf("Build(%q): %d spans, not the %d of its trace in the full build", webKey, len(web), len(want))
	}
	if _, err := Build(ctx, w.j.Read, "no-slash"); err == nil {
		t.Error("Build with rollout \"no-slash\": no error")
	}
}

// TestLiveBuilderMatchesBuild: a Builder following the journal while the
// scenario is written (through the restart) hands out each finished span
// once, as it finishes, and those spans are exactly the batch Build's;
// what it never finished is exactly what is still open.
func TestLiveBuilderMatchesBuild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, err := NewBuilder(Options{Live: true})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		finished []sdktrace.ReadOnlySpan
		// finishedAt: the record after which each span was handed out.
		finishedAt = map[string]uint64{}
		next       = uint64(1)
		errs       = make(chan error, 1)
		journals   = make(chan *journal.Journal, 4)
		stopKey    = "test/stop"
	)
	// The follower outlives the restart: when the journal closes under it,
	// it resumes on the reopened one where it left off.
	go func() {
		for j := range journals {
			err := j.Follow(ctx, next, func(r journal.Record) error {
				if r.Kind == journal.KindTick && r.Key == stopKey {
					return journal.ErrStop
				}
				if err := live.Add(r); err != nil {
					return err
				}
				mu.Lock()
				for _, s := range live.Finished() {
					finished = append(finished, s)
					finishedAt[s.SpanContext().SpanID().String()] = r.Seq
				}
				mu.Unlock()
				next = r.Seq + 1
				return nil
			})
			if errors.Is(err, journal.ErrClosed) {
				continue
			}
			errs <- err
			return
		}
	}()
	w := &world{t: t, dir: t.TempDir(), clock: &clock{t: t0}, pods: map[string]string{}, onOpen: func(j *journal.Journal) { journals <- j }}
	w.open()
	t.Cleanup(func() { w.j.Close() })
	w.scenario()
	w.append(journal.Entry{Kind: journal.KindTick, Key: stopKey, Body: w.encode(&journal.TickFact{})})
	if err := <-errs; err != nil {
		t.Fatal(err)
	}

	all, err := Build(ctx, w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range all {
		byID[s.SpanContext().SpanID().String()] = s
	}
	seen := map[string]bool{}
	for _, s := range finished {
		id := s.SpanContext().SpanID().String()
		if seen[id] {
			t.Errorf("span %s %q finished twice", id, s.Name())
		}
		seen[id] = true
		want, ok := byID[id]
		if !ok {
			t.Errorf("live span %s %q is not in the batch build", id, s.Name())
			continue
		}
		if !reflect.DeepEqual(tracetest.SpanStubFromReadOnlySpan(s), tracetest.SpanStubFromReadOnlySpan(want)) {
			t.Errorf("span %s %q: live\n%+v\nbatch\n%+v", id, s.Name(), tracetest.SpanStubFromReadOnlySpan(s), tracetest.SpanStubFromReadOnlySpan(want))
		}
	}
	// Not finished: the api rollout, its step and its pod. Spans returns
	// just those.
	var open []string
	for _, s := range all {
		if !seen[s.SpanContext().SpanID().String()] {
			open = append(open, s.Name())
		}
	}
	if want := []string{"rollout " + apiKey, "step 0", "pod shop/api-0"}; !reflect.DeepEqual(open, want) {
		t.Errorf("spans never finished: %q, want %q", open, want)
	}
	if got := live.Spans(); len(got) != 3 {
		t.Errorf("live Spans: %d, want the 3 open ones", len(got))
	}
	// Spans were handed out as they finished, not at the end: each action
	// right at its outcome record.
	for _, a := range w.acts {
		if a.fact.Rollout == "" {
			continue
		}
		id := ActionSpanID(scenarioUIDs[a.fact.Rollout], a.fact.Key, a.fact.PlanSeq, a.fact.Attempt).String()
		if finishedAt[id] != a.outSeq {
			t.Errorf("action %s at %d: finished after record %d, want its outcome %d", a.fact.Key, a.seq, finishedAt[id], a.outSeq)
		}
	}
}

// TestSecondRunAndDeletion: a rollout re-targeted after it succeeded gets
// a second run in the same trace, with new step and pod spans under the
// one root, its first step the one the new plan set (not the step the
// first run ended in); deleting it mid-run finishes the run, an action in
// flight still finishes at its outcome, and a Live builder then holds
// nothing.
func TestSecondRunAndDeletion(t *testing.T) {
	w := newWorld(t)
	const key, uid, pod = "shop/web", "4e0d9a1c-0000-4000-8000-00000000000a", "shop/web-0"
	pu := podUID(pod)
	spec := rolloutSpec(img2, 50, 100)
	w.observePod(pod, pu, img1, 1)
	w.observeRollout(key, uid, 10, spec, nil, false)
	var run1 []*act
	for _, a := range []planner.Action{gate(key, pod, pu, "r1"), patch(key, pod, pu, "r1", img1, img2), ungate(key, pod, pu, "r1")} {
		w.clock.advance(time.Second)
		x := w.intend(a)[0]
		w.succeed(x, 2)
		run1 = append(run1, x)
	}
	done := projections.RolloutStatus{Phase: projections.PhaseSucceeded, TargetRevision: "r1", Replicas: 1, Updated: 1, CurrentStep: 1}
	w.clock.advance(time.Second)
	x := w.intend(status(key, uid, done))[0]
	w.succeed(x, 11)
	run1 = append(run1, x)
	w.observeRollout(key, uid, 11, spec, &done, false)

	// Re-targeted to 3.0: the same rollout object, a second run, whose
	// first plan gates the pod and, after it, resets the status to step 0.
	w.clock.advance(time.Minute)
	spec = rolloutSpec("registry.example/web:3.0", 50, 100)
	w.observeRollout(key, uid, 12, spec, &done, false)
	again := projections.RolloutStatus{Phase: projections.PhaseProgressing, TargetRevision: "r2", Replicas: 1}
	run2 := w.intend(gate(key, pod, pu, "r2"), status(key, uid, again))
	w.succeed(run2[0], 3)
	w.succeed(run2[1], 13)
	w.clock.advance(time.Second)
	p := w.intend(patch(key, pod, pu, "r2", img2, "registry.example/web:3.0"))[0]
	w.clock.advance(time.Second)
	w.observeRollout(key, uid, 14, spec, &again, true) // deleted, patch in flight
	w.clock.advance(time.Second)
	w.fail(p, journal.ClassGone, `pods "web-0" not found`)

	for _, liveMode := range []bool{false, true} {
		b, err := NewBuilder(Options{Live: liveMode})
		if err != nil {
			t.Fatal(err)
		}
		var finished []sdktrace.ReadOnlySpan
		err = w.j.Read(context.Background(), 1, func(r journal.Record) error {
			err := b.Add(r)
			finished = append(finished, b.Finished()...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got := sdkSpans(finished)
		byID := checkTrees(t, got)
		checkActions(t, w.acts, map[string]string{key: uid}, byID)
		if len(got) != 1+3+2+7 {
			t.Errorf("live=%v: %d spans, want root, 3 steps, 2 pods, 7 actions", liveMode, len(got))
		}
		root := byID[RolloutSpanID(uid).String()]
		for _, id := range []string{StepSpanID(uid, 0, 1).String(), StepSpanID(uid, 1, 1).String()} {
			if s, ok := byID[id]; !ok || s.Attrs[AttrRun] != "1" || s.Parent != root.SpanID {
				t.Errorf("live=%v: first run's step %s: %v", liveMode, id, s)
			}
		}
		pod1 := byID[PodSpanID(uid, pu, 1).String()]
		if pod1.Parent != StepSpanID(uid, 0, 1).String() {
			t.Errorf("live=%v: first run's pod under %s, want step 0", liveMode, pod1.Parent)
		}
		pod2, ok := byID[PodSpanID(uid, pu, 2).String()]
		step2, ok2 := byID[StepSpanID(uid, 0, 2).String()]
		if !ok || !ok2 || pod2.Parent != step2.SpanID || step2.Parent != root.SpanID || pod2.Attrs[AttrRun] != "2" || step2.Attrs[AttrRun] != "2" {
			t.Fatalf("live=%v: second run: pod %v step %v", liveMode, pod2, step2)
		}
		if root.End.After(step2.Start) || root.Status != "Ok" {
			t.Errorf("live=%v: the root keeps the first run's end %v (second run from %v), status %s", liveMode, root.End, step2.Start, root.Status)
		}
		gone := byID[ActionSpanID(uid, p.fact.Key, p.fact.PlanSeq, 1).String()]
		if !gone.End.Equal(p.outAt) || gone.Status != "Error" || gone.Parent != pod2.SpanID || !pod2.End.Before(gone.End) {
			t.Errorf("live=%v: the in-flight patch: %v..%v %s under %s", liveMode, gone.Start, gone.End, gone.Status, gone.Parent)
		}
		if liveMode && (len(b.Spans()) != 0 || len(b.byKey) != 0 || len(b.order) != 0) {
			t.Errorf("live builder holds %d spans, %d rollouts after the deleted rollout's last outcome", len(b.Spans()), len(b.order))
		}
	}
}

// TestBuilderRejects: records out of order, unknown kinds, bodies that do
// not decode and bad options are errors, as everywhere the journal is read.
func TestBuilderRejects(t *testing.T) {
	if _, err := NewBuilder(Options{Rollout: "a/b/c"}); err == nil {
		t.Error("rollout a/b/c: no error")
	}
	b, _ := NewBuilder(Options{})
	if err := b.Add(journal.Record{Seq: 5, Kind: journal.KindTick}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(journal.Record{Seq: 5, Kind: journal.KindTick}); err == nil {
		t.Error("record 5 twice: no error")
	}
	if err := b.Add(journal.Record{Seq: 6, Kind: 99}); !errors.Is(err, journal.ErrUnknownKind) {
		t.Errorf("kind 99: %v, want ErrUnknownKind", err)
	}
	if err := b.Add(journal.Record{Seq: 7, Kind: journal.KindActionIntended, Body: []byte{0xff}}); !errors.Is(err, journal.ErrCorrupt) {
		t.Errorf("garbage body: %v, want ErrCorrupt", err)
	}
	boom := errors.New("disk on fire")
	_, err := Build(context.Background(), func(context.Context, uint64, func(journal.Record) error) error { return boom }, "")
	if !errors.Is(err, boom) {
		t.Errorf("Build over a failing read: %v", err)
	}
}
