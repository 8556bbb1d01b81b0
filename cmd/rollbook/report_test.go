package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// The report's tests write a journal the way ingest, the planner loop and
// the actuator do (Observed records, Ticks, a plan's intents in one
// append, then outcomes) on a journal whose clock they move by hand, run
// the command on it and read what it wrote: as XML (the page is
// well-formed), as facts (every pod, the summary's figures, the records
// behind each bar) and, in TestReport, as a picture taken by headless
// Chromium.

// repClock is the journal's clock: record times, and so span times, are
// known exactly.
type repClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *repClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *repClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// repWorld writes a journal directory.
type repWorld struct {
	t     *testing.T
	dir   string
	j     *journal.Journal
	clock *repClock
	acts  []*repAct
}

// repAct is one intended action and what became of it.
type repAct struct {
	action  planner.Action
	fact    journal.ActionFact
	seq     uint64
	outSeq  uint64
	outKind journal.Kind
	class   string
}

func newRepWorld(t *testing.T) *repWorld {
	t.Helper()
	w := &repWorld{t: t, dir: t.TempDir(), clock: &repClock{t: time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)}}
	w.open()
	t.Cleanup(func() {
		if w.j != nil {
			w.j.Close()
		}
	})
	return w
}

func (w *repWorld) open() {
	w.t.Helper()
	j, err := journal.Open(w.dir, journal.Options{Now: w.clock.now})
	if err != nil {
		w.t.Fatal(err)
	}
	w.j = j
}

// close closes the journal, as a stopped controller leaves it for the
// report to open, and returns its head.
func (w *repWorld) close() (uint64, [32]byte) {
	w.t.Helper()
	seq, hash := w.j.Last()
	if err := w.j.Close(); err != nil {
		w.t.Fatal(err)
	}
	w.j = nil
	return seq, hash
}

// restart is a controller restart: whatever was in flight is journaled as
// abandoned by the next process.
func (w *repWorld) restart(downtime time.Duration) {
	w.t.Helper()
	w.close()
	w.clock.advance(downtime)
	w.open()
	var es []journal.Entry
	var which []*repAct
	for _, a := range w.acts {
		if a.outSeq == 0 {
			f := a.fact
			f.Action = nil
			f.Class, f.Error = journal.ClassAbandoned, "the controller stopped before the outcome was known"
			es = append(es, journal.Entry{Kind: journal.KindActionFailed, Key: f.Key, Body: w.encode(f)})
			which = append(which, a)
		}
	}
	for i, r := range w.append(es...) {
		which[i].outSeq, which[i].outKind, which[i].class = r.Seq, r.Kind, journal.ClassAbandoned
	}
}

func (w *repWorld) append(es ...journal.Entry) []journal.Record {
	w.t.Helper()
	recs, err := w.j.Append(context.Background(), nil, es...)
	if err != nil {
		w.t.Fatal(err)
	}
	return recs
}

func (w *repWorld) encode(v any) []byte {
	w.t.Helper()
	b, err := journal.EncodeBody(v)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

func (w *repWorld) observePods(image string, rv int, keys ...string) {
	w.t.Helper()
	var es []journal.Entry
	for _, key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		o := journal.Observed{
			Resource: "pods", Namespace: ns, Name: name, UID: repPodUID(key), ResourceVersion: strconv.Itoa(rv),
			Labels: map[string]string{"app": strings.TrimRight(name, "-0123456789")},
			Pod: &journal.PodFacts{
				NodeName: "node-a", Phase: "Running", ReadinessGates: []string{planner.GateCondition},
				Containers: []journal.Container{{Name: "app", Image: image, ImageID: "sha256:" + image, Ready: true, Started: true, State: "running"}},
			},
		}
		es = append(es, journal.Entry{Kind: journal.KindObserved, Key: "pods/" + key, Body: w.encode(&o)})
	}
	w.append(es...)
}

func (w *repWorld) observeRollout(key, uid string, rv int, spec projections.RolloutSpec, st *projections.RolloutStatus) uint64 {
	w.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	o := journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: ns, Name: name, UID: uid, ResourceVersion: strconv.Itoa(rv), Generation: 1}
	var err error
	if o.Spec, err = json.Marshal(spec); err != nil {
		w.t.Fatal(err)
	}
	if st != nil {
		if o.Status, err = json.Marshal(st); err != nil {
			w.t.Fatal(err)
		}
	}
	return w.append(journal.Entry{Kind: journal.KindObserved, Key: "inplacerollouts.rollbook.dev/" + key, Body: w.encode(&o)})[0].Seq
}

func (w *repWorld) tick() {
	w.append(journal.Entry{Kind: journal.KindTick, Key: "tick", Body: w.encode(&journal.TickFact{Reason: "wake"})})
}

// intend journals a plan's intents in one append, as actuator.Intend does.
func (w *repWorld) intend(actions ...planner.Action) []*repAct {
	w.t.Helper()
	planSeq, _ := w.j.Last()
	var es []journal.Entry
	var out []*repAct
	for _, a := range actions {
		f := journal.ActionFact{
			Key: a.Key(), Kind: string(a.Kind), Rollout: a.Rollout, Pod: a.Pod, UID: a.UID,
			Revision: a.Revision, PlanSeq: planSeq, Attempt: 1, Action: w.encode(a),
		}
		es = append(es, journal.Entry{Kind: journal.KindActionIntended, Key: f.Key, Body: w.encode(f)})
		out = append(out, &repAct{action: a, fact: f})
	}
	for i, r := range w.append(es...) {
		out[i].seq = r.Seq
	}
	w.acts = append(w.acts, out...)
	return out
}

// outcomes journals the outcomes of acts in one append: class "" is a
// success, any other a failure with msg.
func (w *repWorld) outcomes(class, msg string, acts ...*repAct) {
	w.t.Helper()
	var es []journal.Entry
	for _, a := range acts {
		f := a.fact
		f.Action = nil
		kind := journal.KindActionSucceeded
		if class != "" {
			kind, f.Class, f.Error = journal.KindActionFailed, class, msg
		} else {
			f.ResultVersion = strconv.FormatUint(a.seq+1000, 10)
		}
		a.outKind, a.class = kind, class
		es = append(es, journal.Entry{Kind: kind, Key: f.Key, Body: w.encode(f)})
	}
	for i, r := range w.append(es...) {
		acts[i].outSeq = r.Seq
	}
}

func (w *repWorld) succeed(acts ...*repAct) { w.outcomes("", "", acts...) }

func repPodUID(key string) string {
	_, name, _ := strings.Cut(key, "/")
	return "uid-" + name + "-4c1e9a7b"
}

func repGate(rollout, pod, rev string) planner.Action {
	return planner.Action{Kind: planner.Gate, Rollout: rollout, Pod: pod, UID: repPodUID(pod), Revision: rev,
		Reason: planner.ReasonUpdating, Message: "rollout " + rollout + " revision " + rev}
}

func repPatch(rollout, pod, rev, from, to string) planner.Action {
	return planner.Action{Kind: planner.Patch, Rollout: rollout, Pod: pod, UID: repPodUID(pod), Revision: rev,
		Images: []planner.ContainerChange{{Name: "app", Index: 0, From: from, To: to}},
		State:  `{"rollout":"` + rollout + `","revision":"` + rev + `"}`}
}

func repUngate(rollout, pod, rev string) planner.Action {
	return planner.Action{Kind: planner.Ungate, Rollout: rollout, Pod: pod, UID: repPodUID(pod), Revision: rev,
		Reason: planner.ReasonReady, Message: "revision " + rev + " verified"}
}

func repStatus(rollout, uid string, st projections.RolloutStatus) planner.Action {
	return planner.Action{Kind: planner.Status, Rollout: rollout, RolloutUID: uid, Status: &st}
}

func repSpec(image string, grace int32, percents ...int32) projections.RolloutSpec {
	spec := projections.RolloutSpec{
		Target:     projections.Target{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Containers: []projections.ContainerTarget{{Name: "app", Image: image}},
	}
	spec.Strategy.GracePeriodSeconds = &grace
	for _, p := range percents {
		spec.Strategy.Steps = append(spec.Strategy.Steps, projections.Step{Percent: p})
	}
	return spec
}

const (
	repKey  = "shop/web-2-0"
	repUID  = "6f1c2b9e-8a34-4d0e-9b7a-2f5d1c0e7a11"
	repRev  = "7c9e4f2a"
	repImg1 = "registry.example/web:1.0"
	repImg2 = "registry.example/web:2.0"
	// repDenied is the webhook's refusal of web-5's patch: markup and
	// quotes that the page must show as text.
	repDenied = `admission webhook "freeze.example.com" denied the request: <b>change freeze</b> & "no-deploy" label on pod web-5`
)

var repPods = []string{"shop/web-0", "shop/web-1", "shop/web-2", "shop/web-3", "shop/web-4", "shop/web-5"}

// scenario: shop/web-2-0 rolls web:2.0 into six pods in two steps (50%,
// 100%) two at a time. web-1's patch hits a conflict and is retried; the
// controller restarts with web-2's patch in flight (abandoned), whose
// retry is throttled once and then goes through; a webhook refuses
// web-5's patch, so the rollout pauses with five pods updated and one
// failed, its trace still open. Returns the sequence of the rollout's
// first record.
func (w *repWorld) scenario() uint64 {
	w.t.Helper()
	p := repPods
	w.observePods(repImg1, 100, p...)
	w.clock.advance(time.Second)
	spec := repSpec(repImg2, 5, 50, 100)
	first := w.observeRollout(repKey, repUID, 200, spec, nil)
	w.clock.advance(100 * time.Millisecond)
	w.tick()

	// Step 0: web-0 and web-1.
	st := projections.RolloutStatus{Phase: projections.PhaseProgressing, Replicas: 6, TargetRevision: repRev, TraceID: planner.TraceID(repUID)}
	a := w.intend(repGate(repKey, p[0], repRev), repGate(repKey, p[1], repRev), repStatus(repKey, repUID, st))
	w.clock.advance(30 * time.Millisecond)
	w.succeed(a...)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(repKey, repUID, 201, spec, &st)
	w.clock.advance(5 * time.Second)
	w.tick()
	b := w.intend(repPatch(repKey, p[0], repRev, repImg1, repImg2), repPatch(repKey, p[1], repRev, repImg1, repImg2))
	w.clock.advance(40 * time.Millisecond)
	w.succeed(b[0])
	w.outcomes(journal.ClassConflict, `Operation cannot be fulfilled on pods "web-1": the object has been modified; please apply your changes to the latest version and try again`, b[1])
	w.clock.advance(200 * time.Millisecond)
	w.observePods(repImg1, 125, p[1])
	c := w.intend(repPatch(repKey, p[1], repRev, repImg1, repImg2))
	w.clock.advance(35 * time.Millisecond)
	w.succeed(c...)
	w.clock.advance(3 * time.Second)
	w.observePods(repImg2, 130, p[0], p[1])
	d := w.intend(repUngate(repKey, p[0], repRev), repUngate(repKey, p[1], repRev))
	w.clock.advance(25 * time.Millisecond)
	w.succeed(d...)

	// Step 1: web-2 and web-3; the controller dies with web-2's patch in
	// flight.
	w.clock.advance(time.Second)
	st.Updated, st.UpdatedReady, st.CurrentStep = 2, 2, 1
	e := w.intend(repGate(repKey, p[2], repRev), repGate(repKey, p[3], repRev), repStatus(repKey, repUID, st))
	w.clock.advance(30 * time.Millisecond)
	w.succeed(e...)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(repKey, repUID, 202, spec, &st)
	w.clock.advance(5 * time.Second)
	w.tick()
	f := w.intend(repPatch(repKey, p[2], repRev, repImg1, repImg2), repPatch(repKey, p[3], repRev, repImg1, repImg2))
	w.clock.advance(40 * time.Millisecond)
	w.succeed(f[1])
	w.restart(20 * time.Second)
	w.clock.advance(500 * time.Millisecond)
	w.observeRollout(repKey, repUID, 202, spec, &st)
	w.observePods(repImg1, 151, p[2])
	g := w.intend(repPatch(repKey, p[2], repRev, repImg1, repImg2))
	w.clock.advance(60 * time.Millisecond)
	w.outcomes(journal.ClassThrottled, "the server has received too many requests and has asked us to try again later (429)", g...)
	w.clock.advance(time.Second)
	w.tick()
	h := w.intend(repPatch(repKey, p[2], repRev, repImg1, repImg2))
	w.clock.advance(45 * time.Millisecond)
	w.succeed(h...)
	w.clock.advance(3 * time.Second)
	w.observePods(repImg2, 160, p[2], p[3])
	i := w.intend(repUngate(repKey, p[2], repRev), repUngate(repKey, p[3], repRev))
	w.clock.advance(25 * time.Millisecond)
	w.succeed(i...)

	// Then web-4 and web-5: the webhook refuses web-5's patch; the
	// rollout pauses and releases web-5, and web-4 finishes.
	w.clock.advance(500 * time.Millisecond)
	k := w.intend(repGate(repKey, p[4], repRev), repGate(repKey, p[5], repRev))
	w.clock.advance(30 * time.Millisecond)
	w.succeed(k...)
	w.clock.advance(5 * time.Second)
	w.tick()
	l := w.intend(repPatch(repKey, p[4], repRev, repImg1, repImg2), repPatch(repKey, p[5], repRev, repImg1, repImg2))
	w.clock.advance(40 * time.Millisecond)
	w.succeed(l[0])
	w.outcomes(journal.ClassInvalid, repDenied, l[1])
	w.clock.advance(10 * time.Millisecond)
	paused := st
	paused.Phase, paused.Updated, paused.UpdatedReady, paused.Failed = projections.PhasePaused, 5, 4, 1
	m := w.intend(repUngate(repKey, p[5], repRev), repStatus(repKey, repUID, paused),
		planner.Action{Kind: planner.Event, Rollout: repKey, RolloutUID: repUID, EventType: "Warning", Reason: "Paused", Message: "pod shop/web-5: " + repDenied})
	w.clock.advance(20 * time.Millisecond)
	w.succeed(m...)
	w.clock.advance(3 * time.Second)
	w.observePods(repImg2, 170, p[4])
	n := w.intend(repUngate(repKey, p[4], repRev))
	w.clock.advance(25 * time.Millisecond)
	w.succeed(n...)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(repKey, repUID, 203, spec, &paused)
	return first
}

// repNode is an element of the report, parsed as XML.
type repNode struct {
	name  string
	attrs map[string]string
	kids  []*repNode
	text  strings.Builder // all text inside, descendants included
}

func (n *repNode) class() string { return n.attrs["class"] }

func (n *repNode) walk(fn func(*repNode)) {
	fn(n)
	for _, k := range n.kids {
		k.walk(fn)
	}
}

// parseReport parses the page as strict XML: the report is written to be
// well-formed (every element closed, attributes quoted, no entity but
// XML's), so any slip in the template or the escaping fails here.
func parseReport(t *testing.T, page []byte) *repNode {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	var stack []*repNode
	var root *repNode
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report is not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &repNode{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, n)
			} else if root != nil {
				t.Fatalf("report has a second root element <%s>", n.name)
			} else {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, n := range stack {
				n.text.Write(tok)
			}
		}
	}
	if root == nil || root.name != "html" {
		t.Fatalf("report has no <html> root")
	}
	return root
}

// figures are the summary's data-fig values.
func figures(root *repNode) map[string]string {
	out := map[string]string{}
	root.walk(func(n *repNode) {
		if k, ok := n.attrs["data-fig"]; ok {
			out[k] = strings.TrimSpace(n.text.String())
		}
	})
	return out
}

func runReport(t *testing.T, args ...string) error {
	t.Helper()
	return reportCmd(context.Background(), args)
}

// TestReport renders the scenario's rollout and checks the page: well
// formed, self-contained, every pod with its bars and records, the
// summary's figures as the journal has them, hostile text escaped, the
// same bytes twice; then looks at it in headless Chromium.
func TestReport(t *testing.T) {
	w := newRepWorld(t)
	firstSeq := w.scenario()
	headSeq, headHash := w.close()
	out := filepath.Join(t.TempDir(), "report.html")
	if err := runReport(t, "--dir", w.dir, "-o", out); err != nil {
		t.Fatalf("report without --rollout on a journal of one rollout: %v", err)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	root := parseReport(t, page)

	// Self-contained: nothing to fetch, and a policy that forbids it.
	for _, bad := range []string{"<link", "src=", "href=", "url(", "@import", "http://", "https://"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("report contains %q: it must not load anything", bad)
		}
	}
	if !bytes.Contains(page, []byte(`content="default-src 'none';`)) {
		t.Error("report has no Content-Security-Policy forbidding fetches")
	}

	// The summary, against what the scenario journaled.
	writes := map[string]int{}
	for _, a := range w.acts {
		writes[a.fact.Kind]++
	}
	podWrites := 0
	for _, a := range w.acts {
		if a.fact.Pod != "" {
			podWrites++
		}
	}
	want := map[string]string{
		"rollout":        repKey,
		"phase":          projections.PhasePaused,
		"trace":          planner.TraceID(repUID),
		"uid":            repUID,
		"revision":       repRev,
		"pods":           "6",
		"updated":        "5",
		"failed":         "1",
		"not-done":       "0",
		"steps":          "2",
		"writes":         strconv.Itoa(len(w.acts)),
		"first-seq":      strconv.FormatUint(firstSeq, 10),
		"last-seq":       strconv.FormatUint(headSeq, 10), // still open: its spans run to the end of the journal
		"head-seq":       strconv.FormatUint(headSeq, 10),
		"head-hash":      hex.EncodeToString(headHash[:]),
		"start":          "2026-03-02 09:30:01.000 UTC",
		"duration":       ctl.ReportDur(w.clock.now().Sub(time.Date(2026, 3, 2, 9, 30, 1, 0, time.UTC))),
		"writes-per-pod": strconv.FormatFloat(float64(podWrites)/6, 'f', 2, 64),
		"images":         "app: " + repImg1 + " → " + repImg2,
	}
	got := figures(root)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("summary %s = %q, want %q", k, got[k], v)
		}
	}
	if len(w.acts) != 25 || writes["patch"] != 9 || writes["gate"] != 6 || writes["ungate"] != 6 || writes["status"] != 3 || writes["event"] != 1 {
		t.Fatalf("scenario wrote %d intents %v; the test's figures assume 25", len(w.acts), writes)
	}

	// The writes table: one row per kind, counted from the spans.
	wantOutcomes := map[string][5]int{ // total, ok, failed, abandoned, pending
		"gate": {6, 6, 0, 0, 0}, "patch": {9, 5, 3, 1, 0}, "ungate": {6, 6, 0, 0, 0},
		"status": {3, 3, 0, 0, 0}, "event": {1, 1, 0, 0, 0}, "all": {25, 21, 3, 1, 0},
	}
	seenKinds := 0
	root.walk(func(n *repNode) {
		k, ok := n.attrs["data-write"]
		if !ok {
			return
		}
		seenKinds++
		var cells []string
		for _, c := range n.kids {
			cells = append(cells, strings.TrimSpace(c.text.String()))
		}
		w := wantOutcomes[k]
		wantCells := []string{k, strconv.Itoa(w[0]), strconv.Itoa(w[1]), strconv.Itoa(w[2]), strconv.Itoa(w[3]), strconv.Itoa(w[4])}
		if fmt.Sprint(cells) != fmt.Sprint(wantCells) {
			t.Errorf("writes row %s: %v, want %v", k, cells, wantCells)
		}
	})
	if seenKinds != len(wantOutcomes) {
		t.Errorf("writes table has %d rows, want %d", seenKinds, len(wantOutcomes))
	}

	// Every pod has a timeline row under its step, and a table row; its
	// bars carry the records behind them.
	rows := map[string]*repNode{}
	tableRows := map[string]bool{}
	var stepOf = map[string]string{}
	step := ""
	root.walk(func(n *repNode) {
		switch {
		case n.class() == "row step":
			step = strings.TrimSpace(n.kids[0].kids[0].text.String())
		case n.class() == "row pod":
			rows[n.attrs["data-pod"]] = n
			stepOf[n.attrs["data-pod"]] = step
		case n.name == "tr" && n.attrs["data-pod"] != "":
			tableRows[n.attrs["data-pod"]] = true
		}
	})
	for i, p := range repPods {
		if rows[p] == nil || !tableRows[p] {
			t.Errorf("pod %s: timeline row %v, table row %v", p, rows[p] != nil, tableRows[p])
			continue
		}
		if wantStep := []string{"Step 0 · 50%", "Step 1 · 100%"}[min(i/2, 1)]; stepOf[p] != wantStep {
			t.Errorf("pod %s drawn under %q, want %q", p, stepOf[p], wantStep)
		}
	}
	if len(rows) != len(repPods) {
		t.Errorf("%d pod rows, want %d", len(rows), len(repPods))
	}
	bars := func(pod string) []*repNode {
		var out []*repNode
		if rows[pod] == nil {
			return nil
		}
		rows[pod].walk(func(n *repNode) {
			if n.name == "i" && n.attrs["title"] != "" {
				out = append(out, n)
			}
		})
		return out
	}
	classes := func(pod string) string {
		var cs []string
		for _, b := range bars(pod) {
			cs = append(cs, b.class())
		}
		return strings.Join(cs, " | ")
	}
	wantBars := map[string]string{
		"shop/web-0": "a gate | w grace | a patch | w verify | a ungate",
		"shop/web-1": "a gate | w grace | a patch fail | w retry | a patch retry | w verify | a ungate",
		"shop/web-2": "a gate | w grace | a patch abandoned | w retry | a patch fail retry | w retry | a patch retry | w verify | a ungate",
		"shop/web-3": "a gate | w grace | a patch | w verify | a ungate",
		"shop/web-4": "a gate | w grace | a patch | w verify | a ungate",
		"shop/web-5": "a gate | w grace | a patch fail | w retry | a ungate",
	}
	for p, wb := range wantBars {
		if c := classes(p); c != wb {
			t.Errorf("pod %s bars:\n got %s\nwant %s", p, c, wb)
		}
	}
	// Each action's bar names its intent and outcome records.
	for _, a := range w.acts {
		if a.fact.Pod == "" {
			continue
		}
		recs := fmt.Sprintf("records #%d → #%d", a.seq, a.outSeq)
		found := false
		for _, b := range bars(a.fact.Pod) {
			if strings.Contains(b.attrs["title"], recs) && strings.HasPrefix(b.attrs["title"], a.fact.Kind) {
				found = true
			}
		}
		if !found {
			t.Errorf("no bar of %s titled with %s %q", a.fact.Pod, a.fact.Kind, recs)
		}
	}
	// The webhook's refusal is shown as text, escaped, never as markup.
	if bytes.Contains(page, []byte("<b>change freeze")) {
		t.Error("the error text's markup reached the page unescaped")
	}
	var refusal bool
	for _, b := range bars("shop/web-5") {
		refusal = refusal || strings.Contains(b.attrs["title"], "error: invalid: "+repDenied)
	}
	if !refusal {
		t.Errorf("web-5's failed patch bar does not carry the refusal %q", repDenied)
	}
	if !strings.Contains(root.text.String(), repDenied) {
		t.Error("the failures table does not show the refusal as text")
	}
	// The restart is marked on the timeline.
	var restart bool
	root.walk(func(n *repNode) { restart = restart || n.class() == "mark restart" })
	if !restart {
		t.Error("no restart marker on the timeline")
	}

	// The same journal renders to the same bytes.
	again := filepath.Join(t.TempDir(), "again.html")
	if err := runReport(t, "--dir", w.dir, "--rollout", repKey, "-o", again); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(again); !bytes.Equal(b, page) {
		t.Error("rendering the same journal twice gave different pages")
	}

	shot := screenshot(t, out)
	checkScreenshot(t, shot)
}

// TestReportRolloutChoice: without --rollout the journal's only rollout
// is reported; with two, the command names them; an unknown one, a bad
// flag or a missing journal is an error that says so.
func TestReportRolloutChoice(t *testing.T) {
	w := newRepWorld(t)
	w.scenario()
	// A second rollout, of one pod.
	spec := repSpec("registry.example/api:2.0", 0, 100)
	w.observeRollout("shop/api-1", "0b7d4e21-5c6a-4f8e-a1d3-9e8c7b6a5f40", 400, spec, nil)
	// Its pod is gated, and its patch was sent when the journal ends.
	a := w.intend(repGate("shop/api-1", "shop/api-0", "3d2a1f0b"))
	w.clock.advance(20 * time.Millisecond)
	w.succeed(a...)
	w.clock.advance(5 * time.Second)
	w.intend(repPatch("shop/api-1", "shop/api-0", "3d2a1f0b", "registry.example/api:1.0", "registry.example/api:2.0"))
	w.clock.advance(time.Second)
	w.tick()
	w.close()

	out := filepath.Join(t.TempDir(), "r.html")
	err := runReport(t, "--dir", w.dir, "-o", out)
	if err == nil || !strings.Contains(err.Error(), "--rollout") || !strings.Contains(err.Error(), "shop/api-1, shop/web-2-0") {
		t.Errorf("two rollouts, no --rollout: error %v, want one naming both and --rollout", err)
	}
	err = runReport(t, "--dir", w.dir, "--rollout", "shop/nope", "-o", out)
	if err == nil || !strings.Contains(err.Error(), "no rollout shop/nope") || !strings.Contains(err.Error(), "shop/api-1, shop/web-2-0") {
		t.Errorf("unknown rollout: error %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed report left %s behind (%v)", out, err)
	}
	if err := runReport(t, "--dir", w.dir, "--rollout", "shop/api-1", "-o", out); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	root := parseReport(t, page)
	got := figures(root)
	if got["rollout"] != "shop/api-1" || got["pods"] != "1" || got["updated"] != "0" || got["not-done"] != "1" || got["phase"] != projections.PhasePending {
		t.Errorf("report of shop/api-1: %v", got)
	}
	// The patch in flight runs to the end of the journal, drawn as such.
	var pending []string
	root.walk(func(n *repNode) {
		if n.class() == "a patch pending" {
			pending = append(pending, n.attrs["title"])
		}
	})
	if len(pending) != 1 || !strings.Contains(pending[0], "no outcome in the journal") || !strings.Contains(pending[0], "(1s)") {
		t.Errorf("bars of the patch in flight: %q", pending)
	}
	if bytes.Contains(page, []byte("web-2-0")) {
		t.Error("report of shop/api-1 mentions the other rollout")
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dir", filepath.Join(t.TempDir(), "none"), "-o", out}, "no journal at"},
		{[]string{"--dir", w.dir, "--max-rows", "-1", "-o", out}, "--max-rows"},
		{[]string{"--dir", w.dir, "--rollout", "no-namespace", "-o", out}, "namespace/name"},
		{[]string{"--dir", w.dir, "extra"}, "unexpected arguments"},
	} {
		if err := runReport(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("report %v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
}

// TestReportLargeFleet: 1,200 pods stay a page a browser opens at once:
// past --max-rows each step is one aggregate row, the pods that had
// trouble keep theirs, and the table still lists every pod.
func TestReportLargeFleet(t *testing.T) {
	const n, batch = 1200, 100
	w := newRepWorld(t)
	pods := make([]string, n)
	for i := range pods {
		pods[i] = fmt.Sprintf("fleet/edge-%04d", i)
	}
	w.observePods(repImg1, 10, pods...)
	key, uid := "fleet/edge-2-0", "9d7c1e2a-0000-4000-8000-000000000001"
	spec := repSpec(repImg2, 5, 10, 100)
	w.observeRollout(key, uid, 20, spec, nil)
	st := projections.RolloutStatus{Phase: projections.PhaseProgressing, Replicas: n, TargetRevision: repRev}
	trouble := map[string]bool{}
	for b := 0; b < n; b += batch {
		var gates, patches, ungates []planner.Action
		for _, p := range pods[b : b+batch] {
			gates = append(gates, repGate(key, p, repRev))
			patches = append(patches, repPatch(key, p, repRev, repImg1, repImg2))
			ungates = append(ungates, repUngate(key, p, repRev))
		}
		if b == batch { // the first step is 10%: one batch
			st.CurrentStep = 1
			gates = append(gates, repStatus(key, uid, st))
		}
		w.clock.advance(time.Second)
		w.succeed(w.intend(gates...)...)
		w.clock.advance(5 * time.Second)
		pa := w.intend(patches...)
		w.clock.advance(50 * time.Millisecond)
		w.succeed(pa[1:]...)
		w.outcomes(journal.ClassConflict, "the object has been modified", pa[0])
		trouble[pods[b]] = true
		w.succeed(w.intend(patches[0])...)
		w.clock.advance(time.Duration(3000+b) * time.Millisecond)
		w.succeed(w.intend(ungates...)...)
	}
	st.Phase, st.Updated, st.UpdatedReady = projections.PhaseSucceeded, n, n
	w.succeed(w.intend(repStatus(key, uid, st))...)
	w.clock.advance(10 * time.Millisecond)
	w.observeRollout(key, uid, 21, spec, &st)
	w.close()

	out := filepath.Join(t.TempDir(), "fleet.html")
	if err := runReport(t, "--dir", w.dir, "-o", out); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) > 1<<20 {
		t.Errorf("report of %d pods is %d KiB, want at most 1 MiB", n, len(page)>>10)
	}
	root := parseReport(t, page)
	got := figures(root)
	if got["pods"] != strconv.Itoa(n) || got["updated"] != strconv.Itoa(n) || got["phase"] != projections.PhaseSucceeded || got["collapsed"] == "" {
		t.Errorf("summary %v", got)
	}
	aggs, podRows, tableRows := 0, map[string]bool{}, 0
	root.walk(func(n *repNode) {
		switch {
		case n.class() == "row agg":
			aggs++
			var paths int
			n.walk(func(c *repNode) {
				if c.name == "path" && c.attrs["d"] != "" {
					paths++
				}
			})
			if paths == 0 {
				t.Errorf("aggregate row %q draws nothing", n.text.String())
			}
		case n.class() == "row pod":
			podRows[n.attrs["data-pod"]] = true
		case n.name == "tr" && n.attrs["data-pod"] != "":
			tableRows++
		}
	})
	if aggs != 2 {
		t.Errorf("%d aggregate rows, want one per step (2)", aggs)
	}
	if fmt.Sprint(podRows) != fmt.Sprint(trouble) {
		t.Errorf("pods with rows of their own: %v, want those that retried: %v", podRows, trouble)
	}
	if tableRows != n {
		t.Errorf("pod table has %d rows, want %d", tableRows, n)
	}

	// --max-rows above the fleet draws every pod.
	if err := runReport(t, "--dir", w.dir, "--max-rows", "5000", "-o", out); err != nil {
		t.Fatal(err)
	}
	page, _ = os.ReadFile(out)
	podRows = map[string]bool{}
	parseReport(t, page).walk(func(n *repNode) {
		if n.class() == "row pod" {
			podRows[n.attrs["data-pod"]] = true
		}
	})
	if len(podRows) != n {
		t.Errorf("--max-rows 5000: %d pod rows, want %d", len(podRows), n)
	}
}

// chromium is Debian's package "chromium"; test/all installs it.
const chromium = "/usr/bin/chromium"

// screenshot renders the page in headless Chromium at 1400×900.
func screenshot(t *testing.T, page string) image.Image {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing: install Debian's package chromium (test/all does): %v", chromium, err)
	}
	tmp := t.TempDir()
	shot := filepath.Join(tmp, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir="+filepath.Join(tmp, "profile"), "--window-size=1400,900",
		"--screenshot="+shot, "file://"+page)
	// Chromium forks helpers: a timeout ends the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	outb, err := cmd.CombinedOutput()
	// Helpers it forked and left behind go too (they would hold tmp open).
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, outb)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("chromium wrote no screenshot: %v\n%s", err, outb)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if dst := os.Getenv("ROLLBOOK_REPORT_SHOT"); dst != "" {
		// To look at it: ROLLBOOK_REPORT_SHOT=/tmp/shot.png go test ./cmd/rollbook -run 'TestReport$'
		// keeps the picture, and the page beside it as /tmp/shot.html.
		for from, to := range map[string]string{shot: dst, page: strings.TrimSuffix(dst, ".png") + ".html"} {
			if b, err := os.ReadFile(from); err != nil {
				t.Error(err)
			} else if err := os.WriteFile(to, b, 0o644); err != nil {
				t.Error(err)
			}
		}
	}
	return img
}

// checkScreenshot: the picture has the window's size, is not blank, and
// shows the timeline's bars in their colours (the CSS's --gate, --patch,
// --ungate, --fail and --grace).
func checkScreenshot(t *testing.T, img image.Image) {
	t.Helper()
	b := img.Bounds()
	if b.Dx() != 1400 || b.Dy() != 900 {
		t.Fatalf("screenshot is %dx%d, want 1400x900", b.Dx(), b.Dy())
	}
	type rgb struct{ r, g, b uint8 }
	colours := map[rgb]int{}
	nonWhite := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := rgb{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
			colours[c]++
			if c.r < 245 || c.g < 245 || c.b < 245 {
				nonWhite++
			}
		}
	}
	if len(colours) < 32 {
		t.Errorf("screenshot has %d distinct colours: blank or unstyled", len(colours))
	}
	if frac := float64(nonWhite) / float64(b.Dx()*b.Dy()); frac < 0.05 {
		t.Errorf("screenshot is %.1f%% non-white: nearly blank", frac*100)
	}
	near := func(c rgb, want rgb) bool {
		d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
		return d(c.r, want.r) <= 6 && d(c.g, want.g) <= 6 && d(c.b, want.b) <= 6
	}
	for name, want := range map[string]rgb{
		"gate (#d97706)":   {0xd9, 0x77, 0x06},
		"grace (#fde68a)":  {0xfd, 0xe6, 0x8a},
		"patch (#2563eb)":  {0x25, 0x63, 0xeb},
		"ungate (#059669)": {0x05, 0x96, 0x69},
		"failed (#dc2626)": {0xdc, 0x26, 0x26},
	} {
		count := 0
		for c, k := range colours {
			if near(c, want) {
				count += k
			}
		}
		if count < 40 {
			t.Errorf("screenshot shows %d pixels of %s: the timeline's bars are not drawn", count, name)
		}
	}
}
