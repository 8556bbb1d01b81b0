package ctl

import (
	"context"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/tracing"
)

// `rollbook report` renders one rollout, rebuilt from the journal by
// tracing.Build, as a single self-contained HTML file: a summary, the API
// writes by kind, a timeline with one row per pod grouped by step, the
// failures and a table of every pod. Everything on the page comes from the
// spans (and the journal's head, to pin what was read), so the same journal
// always renders to the same bytes; there is no clock and no external
// fetch (a Content-Security-Policy forbids any).
//
// Large fleets: past --max-rows pods, each step becomes one aggregate row
// (how many of its pods were in grace, verifying or retrying over time)
// and only the pods worth a look (failures, retries, abandoned or
// unfinished actions) keep a row of their own, up to --max-rows.

//go:embed report/report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Parse(reportHTML))

// ReportDefaultMaxRows keeps the timeline of a large fleet to a few hundred
// kilobytes (the pod table adds about a third of a kilobyte per pod).
const ReportDefaultMaxRows = 200

// reportSpans builds the spans of rollout, or of the journal's only
// rollout when rollout is "", from the source described as from.
func reportSpans(ctx context.Context, read tracing.ReadFunc, rollout, from string) ([]sdktrace.ReadOnlySpan, error) {
	if rollout != "" {
		spans, err := tracing.Build(ctx, read, rollout)
		if err != nil || len(spans) > 0 {
			return spans, err
		}
	}
	all, err := tracing.Build(ctx, read, "")
	if err != nil {
		return nil, err
	}
	names := reportRolloutNames(all)
	switch {
	case len(names) == 0:
		return nil, fmt.Errorf("%s has no rollout", from)
	case rollout != "":
		return nil, fmt.Errorf("no rollout %s in %s; it has: %s", rollout, from, strings.Join(names, ", "))
	case len(names) > 1:
		return nil, fmt.Errorf("%s has %d rollouts; choose one with --rollout: %s", from, len(names), strings.Join(names, ", "))
	}
	var out []sdktrace.ReadOnlySpan
	for _, s := range all {
		if reportAttrs(s).str(tracing.AttrRollout) == names[0] {
			out = append(out, s)
		}
	}
	return out, nil
}

func reportRolloutNames(spans []sdktrace.ReadOnlySpan) []string {
	seen := map[string]bool{}
	var names []string
	for _, s := range spans {
		if s.Parent().IsValid() {
			continue
		}
		if n := reportAttrs(s).str(tracing.AttrRollout); n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// ReportTitle names the rollouts of spans.
func ReportTitle(spans []sdktrace.ReadOnlySpan) string {
	names := reportRolloutNames(spans)
	if len(names) == 0 {
		return "no rollout"
	}
	return strings.Join(names, ", ")
}

// ReportOptions are what RenderReport needs beyond the spans.
type ReportOptions struct {
	JournalID string
	HeadSeq   uint64
	HeadHash  [32]byte
	// MaxRows is the most pod rows drawn; a report with more pods draws
	// per-step aggregate rows and only the pods that had trouble.
	MaxRows int
}

// RenderReport writes the HTML report of spans (one trace per rollout
// object; usually one). It reads nothing else: equal inputs, equal bytes.
func RenderReport(w io.Writer, spans []sdktrace.ReadOnlySpan, opts ReportOptions) error {
	page, err := buildReportPage(spans, opts)
	if err != nil {
		return err
	}
	return reportTemplate.Execute(w, page)
}

// The page model: everything the template shows, already formatted.

type reportPage struct {
	Title     string
	JournalID string
	HeadSeq   uint64
	HeadHash  string
	MaxRows   int
	Rollouts  []*reportRollout
	Legend    []reportLegend
}

type reportLegend struct{ Class, Label string }

type reportRollout struct {
	Key, UID, TraceID    string
	Revision, Phase      string
	PhaseClass           string
	Open                 bool
	Start, End, Duration string
	FirstSeq, LastSeq    int64
	Steps                int
	Images               string // the image change of most pods
	Pods, Updated        int
	Failed, NotDone      int
	Writes               []*reportWrites
	WritesTotal          reportWrites
	WritesPerPod         string
	Axis                 []reportTick
	Grid                 template.CSS // the track background: one line per tick
	Markers              []reportBar
	RolloutBars          []reportBar
	RolloutTitle         string
	Groups               []*reportGroup
	Collapsed            bool
	Hidden               int // pods with trouble left out of the rows (past MaxRows)
	Failures             []reportFailure
	MoreFailures         int
	Table                []reportPodLine
	// Analysis lists every measurement of the steps' analyses: the
	// evidence each promote or rollback rests on.
	Analysis []reportMeasurement
}

// reportMeasurement is one analysis measurement, from its measure span.
type reportMeasurement struct {
	At, Check, Query, Condition, Value, Verdict, VerdictClass, Error, Records string
	Step                                                                      int64
}

func newReportMeasurement(sc reportScale, c *reportSpan) reportMeasurement {
	m := reportMeasurement{
		At: sc.offset(c.end), Step: c.a.int(tracing.AttrStep), Check: c.a.str(tracing.AttrCheck),
		Query: c.a.str(tracing.AttrQuery), Condition: c.a.str(tracing.AttrCondition),
		Value: c.a.str(tracing.AttrValue), Verdict: c.a.str(tracing.AttrVerdict), Records: c.records(),
	}
	switch m.Verdict {
	case journal.VerdictPass:
		m.VerdictClass = "ok"
	case journal.VerdictFail, journal.VerdictInvalid:
		m.VerdictClass = "bad"
	case "":
		m.Verdict, m.VerdictClass = "pending", "warn"
	default:
		m.VerdictClass = "warn"
	}
	for _, e := range c.s.Events() {
		for _, kv := range e.Attributes {
			if kv.Key == "rollbook.analysis.error" {
				m.Error = kv.Value.AsString()
			}
		}
	}
	return m
}

type reportWrites struct {
	Kind                                  string
	Total, OK, Failed, Abandoned, Pending int
}

type reportTick struct {
	Style template.CSS
	Label string
}

// reportBar is one coloured stretch of a track: an action or a wait.
type reportBar struct {
	Class string
	Style template.CSS
	Title string
	Label string
}

type reportGroup struct {
	Title, Sub string
	Bar        reportBar
	Agg        *reportAgg
	Rows       []*reportRow
}

type reportRow struct {
	Pod, Name string
	Title     string
	Badges    []reportBadge
	Dur       string
	Bars      []reportBar
}

type reportBadge struct{ Class, Text, Title string }

type reportAgg struct {
	Title  string
	Label  string
	Peak   string
	Layers []reportLayer
	Bars   []reportBar // failures, as ticks
	// values[layer][bucket]: the average number of pods in the layer
	// during the bucket; drawn as Layers once the peak of all steps is known.
	values [][]float64
}

type reportLayer struct{ Class, D string }

type reportFailure struct {
	At, Pod, Action, Class, Error, Records string
	Abandoned                              bool
}

type reportPodLine struct {
	Pod, Step, State, StateClass string
	Start, Dur                   string
	Writes, Failures             int
	Images, Records              string
}

// Span access.

type reportSpanAttrs map[string]attribute.Value

func reportAttrs(s sdktrace.ReadOnlySpan) reportSpanAttrs {
	m := make(reportSpanAttrs, len(s.Attributes()))
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func (m reportSpanAttrs) has(k string) bool { _, ok := m[k]; return ok }

func (m reportSpanAttrs) str(k string) string {
	v, ok := m[k]
	if !ok {
		return ""
	}
	if v.Type() == attribute.STRING {
		return v.AsString()
	}
	return v.Emit()
}

func (m reportSpanAttrs) int(k string) int64 {
	if v, ok := m[k]; ok && v.Type() == attribute.INT64 {
		return v.AsInt64()
	}
	return 0
}

func (m reportSpanAttrs) strs(k string) []string {
	if v, ok := m[k]; ok && v.Type() == attribute.STRINGSLICE {
		return v.AsStringSlice()
	}
	return nil
}

// reportSpan is a span with its attributes read once.
type reportSpan struct {
	s          sdktrace.ReadOnlySpan
	a          reportSpanAttrs
	id, parent trace.SpanID
	start, end time.Time
}

func (r *reportSpan) isAction() bool { return r.a.has(tracing.AttrActionKind) }
func (r *reportSpan) isPod() bool    { return r.a.has(tracing.AttrPod) && !r.isAction() }
func (r *reportSpan) isStep() bool {
	return r.a.has(tracing.AttrStep) && !r.a.has(tracing.AttrPod) && !r.isAction()
}
func (r *reportSpan) open() bool      { return r.a.str(tracing.AttrOpen) == "true" }
func (r *reportSpan) outcome() string { return r.a.str(tracing.AttrOutcome) }
func (r *reportSpan) kind() string    { return r.a.str(tracing.AttrActionKind) }
func (r *reportSpan) try() int64      { return max(r.a.int(tracing.AttrTry), 1) }

func (r *reportSpan) records() string {
	s := "#" + r.a.str(tracing.AttrSeq)
	if o := r.a.str(tracing.AttrOutcomeSeq); o != "" && o != r.a.str(tracing.AttrSeq) {
		s += " → #" + o
	}
	return s
}

func (r *reportSpan) errText() string {
	if st := r.s.Status(); st.Code == codes.Error {
		return st.Description
	}
	return ""
}

func buildReportPage(spans []sdktrace.ReadOnlySpan, opts ReportOptions) (*reportPage, error) {
	if opts.MaxRows < 0 {
		return nil, fmt.Errorf("report: MaxRows is %d, must be >= 0", opts.MaxRows)
	}
	page := &reportPage{
		JournalID: opts.JournalID,
		HeadSeq:   opts.HeadSeq,
		HeadHash:  hex.EncodeToString(opts.HeadHash[:]),
		MaxRows:   opts.MaxRows,
		Legend:    reportLegendItems,
	}
	byTrace := map[trace.TraceID][]*reportSpan{}
	var traces []trace.TraceID
	for _, s := range spans {
		tid := s.SpanContext().TraceID()
		if _, ok := byTrace[tid]; !ok {
			traces = append(traces, tid)
		}
		r := &reportSpan{s: s, a: reportAttrs(s), id: s.SpanContext().SpanID(), start: s.StartTime(), end: s.EndTime()}
		if s.Parent().IsValid() {
			r.parent = s.Parent().SpanID()
		}
		byTrace[tid] = append(byTrace[tid], r)
	}
	for _, tid := range traces {
		ro, err := buildReportRollout(tid, byTrace[tid], opts)
		if err != nil {
			return nil, err
		}
		page.Rollouts = append(page.Rollouts, ro)
	}
	if len(page.Rollouts) == 0 {
		return nil, errors.New("report: no spans to report")
	}
	sort.SliceStable(page.Rollouts, func(i, j int) bool { return page.Rollouts[i].Start < page.Rollouts[j].Start })
	page.Title = page.Rollouts[0].Key
	return page, nil
}

// reportScale maps times of one trace to percentages of the track.
type reportScale struct {
	t0    time.Time
	total time.Duration
}

func (sc reportScale) pct(t time.Time) float64 {
	p := float64(t.Sub(sc.t0)) / float64(sc.total) * 100
	return math.Min(math.Max(p, 0), 100)
}

// offset is t from the rollout's start, to the millisecond: "+5.140s",
// "+1m02.345s", "+2h03m04.000s".
func (sc reportScale) offset(t time.Time) string {
	d := t.Sub(sc.t0).Round(time.Millisecond)
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	h, m := d/time.Hour, (d%time.Hour)/time.Minute
	s := float64(d%time.Minute) / float64(time.Second)
	switch {
	case h > 0:
		return fmt.Sprintf("%s%dh%02dm%06.3fs", sign, h, m, s)
	case m > 0:
		return fmt.Sprintf("%s%dm%06.3fs", sign, m, s)
	}
	return fmt.Sprintf("%s%.3fs", sign, s)
}

// style places [from, to) on the track.
func (sc reportScale) style(from, to time.Time) template.CSS {
	l, r := sc.pct(from), sc.pct(to)
	// NB: template.CSS is trusted; it is built from formatted numbers only.
	return template.CSS("left:" + reportPct(l) + "%;width:" + reportPct(math.Max(r-l, 0)) + "%")
}

func reportPct(p float64) string { return strconv.FormatFloat(p, 'f', 3, 64) }

// rolloutReport builds the page of one trace.
type rolloutReport struct {
	ro       *reportRollout
	sc       reportScale
	opts     ReportOptions
	root     *reportSpan
	children map[trace.SpanID][]*reportSpan // by parent, in start order
	writes   map[string]*reportWrites
	failures []*reportSpan // failed and abandoned actions
}

// reportPodEntry is a pod's span with its actions.
type reportPodEntry struct {
	pod, step *reportSpan
	acts      []*reportSpan
	segs      []reportSeg
	state     string
	row       *reportRow
}

func buildReportRollout(tid trace.TraceID, spans []*reportSpan, opts ReportOptions) (*reportRollout, error) {
	byID := map[trace.SpanID]*reportSpan{}
	for _, s := range spans {
		byID[s.id] = s
	}
	b := &rolloutReport{opts: opts, children: map[trace.SpanID][]*reportSpan{}, writes: map[string]*reportWrites{}}
	for _, s := range spans {
		if _, ok := byID[s.parent]; s.parent.IsValid() && ok {
			b.children[s.parent] = append(b.children[s.parent], s)
		} else if b.root == nil || s.start.Before(b.root.start) {
			b.root = s
		}
	}
	root := b.root
	if root == nil || root.isAction() || root.isPod() || root.isStep() {
		return nil, fmt.Errorf("report: trace %s has no rollout span", tid)
	}
	for _, l := range b.children {
		sort.SliceStable(l, func(i, j int) bool {
			if !l[i].start.Equal(l[j].start) {
				return l[i].start.Before(l[j].start)
			}
			return l[i].a.int(tracing.AttrSeq) < l[j].a.int(tracing.AttrSeq)
		})
	}

	end, lastSeq := root.end, root.a.int(tracing.AttrSeq)
	for _, s := range spans {
		if s.end.After(end) {
			end = s.end
		}
		lastSeq = max(lastSeq, s.a.int(tracing.AttrSeq), s.a.int(tracing.AttrOutcomeSeq))
	}
	if root.open() {
		// Its spans run on to the end of the journal, which was read whole.
		lastSeq = max(lastSeq, int64(opts.HeadSeq))
	}
	b.sc = reportScale{t0: root.start, total: max(end.Sub(root.start), time.Millisecond)}
	ro := &reportRollout{
		Key:      root.a.str(tracing.AttrRollout),
		UID:      root.a.str(tracing.AttrRolloutUID),
		TraceID:  tid.String(),
		Revision: root.a.str(tracing.AttrRevision),
		Phase:    root.a.str(tracing.AttrPhase),
		Open:     root.open(),
		Start:    reportTime(root.start),
		End:      reportTime(end),
		Duration: ReportDur(end.Sub(root.start)),
		FirstSeq: root.a.int(tracing.AttrSeq),
		LastSeq:  lastSeq,
		Steps:    int(root.a.int(tracing.AttrSteps)),
	}
	b.ro = ro
	if ro.Phase == "" {
		ro.Phase = projections.PhasePending
	}
	ro.PhaseClass = reportPhaseClass(ro.Phase)
	ro.Axis, ro.Grid = reportAxis(b.sc)

	steps := b.rolloutTrack()
	pods := b.pods(steps)
	b.rows(pods)
	b.groups(steps, pods)
	b.marks()
	b.failureTable()
	for _, k := range reportKindOrder(b.writes) {
		ro.Writes = append(ro.Writes, b.writes[k])
	}
	if ro.Pods > 0 {
		podWrites := 0
		for _, pe := range pods {
			podWrites += len(pe.acts)
		}
		ro.WritesPerPod = strconv.FormatFloat(float64(podWrites)/float64(ro.Pods), 'f', 2, 64)
	}
	return ro, nil
}

// count adds an action to the writes table (and the failures, if it
// failed).
func (b *rolloutReport) count(a *reportSpan) {
	k := a.kind()
	w := b.writes[k]
	if w == nil {
		w = &reportWrites{Kind: k}
		b.writes[k] = w
	}
	for _, x := range []*reportWrites{w, &b.ro.WritesTotal} {
		x.Total++
		switch a.outcome() {
		case tracing.OutcomeSucceeded:
			x.OK++
		case tracing.OutcomeFailed:
			x.Failed++
		case tracing.OutcomeAbandoned:
			x.Abandoned++
		default:
			x.Pending++
		}
	}
	if o := a.outcome(); o == tracing.OutcomeFailed || o == tracing.OutcomeAbandoned {
		b.failures = append(b.failures, a)
	}
}

// rolloutTrack draws the rollout's own row (its span, status writes and
// events) and returns its step spans.
func (b *rolloutReport) rolloutTrack() []*reportSpan {
	root, ro, sc := b.root, b.ro, b.sc
	ro.RolloutTitle = fmt.Sprintf("rollout %s, uid %s\nphase %s, records %s", ro.Key, ro.UID, ro.Phase, root.records())
	ro.RolloutBars = append(ro.RolloutBars, reportBar{Class: "span", Style: sc.style(root.start, root.end),
		Title: fmt.Sprintf("rollout %s\n%s → %s (%s)\nrecords %s", ro.Key, sc.offset(root.start), sc.offset(root.end), ReportDur(root.end.Sub(root.start)), root.records())})
	var steps []*reportSpan
	for _, c := range b.children[root.id] {
		switch {
		case c.isAction() && c.kind() == string(planner.Measure):
			// A measurement writes nothing: it is evidence, not a write.
			ro.Analysis = append(ro.Analysis, newReportMeasurement(sc, c))
		case c.isAction():
			b.count(c)
			ro.RolloutBars = append(ro.RolloutBars, reportActionBar(sc, c, ro.Key))
		case c.isStep():
			steps = append(steps, c)
		}
	}
	return steps
}

// pods reads every pod span under steps, with its actions.
func (b *rolloutReport) pods(steps []*reportSpan) []*reportPodEntry {
	var pods []*reportPodEntry
	end := b.sc.t0.Add(b.sc.total)
	for _, st := range steps {
		for _, c := range b.children[st.id] {
			if !c.isPod() {
				continue
			}
			pe := &reportPodEntry{pod: c, step: st}
			for _, a := range b.children[c.id] {
				if a.isAction() {
					pe.acts = append(pe.acts, a)
					b.count(a)
				}
			}
			pe.segs = reportSegments(c, pe.acts, end)
			pe.state = reportPodState(pe.acts)
			pods = append(pods, pe)
		}
	}
	return pods
}

// rows sums the pods up and draws their rows: every pod's, or, past
// MaxRows, only those of pods that had trouble (up to MaxRows).
func (b *rolloutReport) rows(pods []*reportPodEntry) {
	ro := b.ro
	ro.Pods = len(pods)
	ro.Collapsed = len(pods) > b.opts.MaxRows
	images := map[string]int{}
	for _, pe := range pods {
		images[reportImages(pe.pod)]++
	}
	for img, n := range images {
		if n > images[ro.Images] || (n == images[ro.Images] && img < ro.Images) {
			ro.Images = img
		}
	}
	drawn := 0
	for _, pe := range pods {
		switch pe.state {
		case reportUpdated:
			ro.Updated++
		case reportFailed:
			ro.Failed++
		default:
			ro.NotDone++
		}
		trouble := pe.state != reportUpdated || pe.pod.a.int(tracing.AttrFailures) > 0 || reportMaxTry(pe.acts) > 1
		switch {
		case !ro.Collapsed || (trouble && drawn < b.opts.MaxRows):
			pe.row = reportPodRow(b.sc, pe)
			drawn++
		case trouble:
			ro.Hidden++
		}
		line := reportTableLine(b.sc, pe)
		if line.Images == ro.Images {
			line.Images = "" // said once, in the summary
		}
		ro.Table = append(ro.Table, line)
	}
}

// groups puts the rows under their steps and, past MaxRows, draws each
// step's aggregate row.
func (b *rolloutReport) groups(steps []*reportSpan, pods []*reportPodEntry) {
	ro, sc := b.ro, b.sc
	byStep := map[trace.SpanID][]*reportPodEntry{}
	for _, pe := range pods {
		byStep[pe.step.id] = append(byStep[pe.step.id], pe)
	}
	var peak float64
	for _, st := range steps {
		ps := byStep[st.id]
		g := &reportGroup{Title: reportStepTitle(st), Sub: fmt.Sprintf("%d pods · %s", len(ps), ReportDur(st.end.Sub(st.start)))}
		g.Bar = reportBar{Class: "span step", Style: sc.style(st.start, st.end),
			Title: fmt.Sprintf("%s\n%s → %s (%s)\nbegun at record #%s", g.Title, sc.offset(st.start), sc.offset(st.end), ReportDur(st.end.Sub(st.start)), st.a.str(tracing.AttrSeq))}
		for _, pe := range ps {
			if pe.row != nil {
				g.Rows = append(g.Rows, pe.row)
			}
		}
		if ro.Collapsed && len(ps) > 0 {
			g.Agg = reportAggregate(sc, g.Title, ps)
			peak = math.Max(peak, g.Agg.peak())
		}
		ro.Groups = append(ro.Groups, g)
	}
	for _, g := range ro.Groups {
		if g.Agg != nil {
			g.Agg.draw(peak)
		}
	}
}

// marks draws the vertical lines across the timeline: the rollout's end
// events (deleted, replaced) and controller restarts, seen as intents
// abandoned and journaled so by the next controller, all at once as it
// starts.
func (b *rolloutReport) marks() {
	ro, sc := b.ro, b.sc
	mark := func(class, label string, at time.Time, title string) {
		ro.Markers = append(ro.Markers, reportBar{Class: "mark " + class, Label: label,
			Style: template.CSS("left:" + reportPct(sc.pct(at)) + "%"), Title: title})
	}
	for _, e := range b.root.s.Events() {
		mark("end", "end", e.Time, e.Name+" at "+sc.offset(e.Time))
	}
	var abandoned []*reportSpan
	for _, f := range b.failures {
		if f.outcome() == tracing.OutcomeAbandoned {
			abandoned = append(abandoned, f)
		}
	}
	sort.SliceStable(abandoned, func(i, j int) bool { return abandoned[i].end.Before(abandoned[j].end) })
	for i := 0; i < len(abandoned); {
		first, n := abandoned[i], 0
		for ; i < len(abandoned) && abandoned[i].end.Sub(first.end) < reportRestartWindow; i++ {
			n++
		}
		mark("restart", "restart", first.end, fmt.Sprintf("controller restart: %d in-flight intent(s) journaled as abandoned at %s (from record #%s)",
			n, sc.offset(first.end), first.a.str(tracing.AttrOutcomeSeq)))
	}
}

func (b *rolloutReport) failureTable() {
	ro := b.ro
	sort.SliceStable(b.failures, func(i, j int) bool { return b.failures[i].start.Before(b.failures[j].start) })
	for i, f := range b.failures {
		if i == reportMaxFailures {
			ro.MoreFailures = len(b.failures) - i
			break
		}
		who := f.a.str(tracing.AttrPod)
		if who == "" {
			who = "rollout"
		}
		class := f.a.str(tracing.AttrErrorClass)
		ro.Failures = append(ro.Failures, reportFailure{
			At: b.sc.offset(f.start), Pod: who, Action: reportActionName(f), Class: class,
			Error: strings.TrimPrefix(f.errText(), class+": "), Records: f.records(),
			Abandoned: f.outcome() == tracing.OutcomeAbandoned,
		})
	}
}

const (
	// reportRestartWindow: abandoned outcomes this close together were
	// journaled by one restart.
	reportRestartWindow = 5 * time.Second
	reportMaxFailures   = 200
	reportMaxAggMarks   = 500
	reportAggBuckets    = 240
)

var reportLegendItems = []reportLegend{
	{"a gate", "gate"},
	{"w grace", "grace period"},
	{"w hook", "lifecycle hook wait"},
	{"a patch", "patch"},
	{"w verify", "verify wait"},
	{"a ungate", "ungate"},
	{"a resize", "resize"},
	{"a recreate", "recreate"},
	{"a fail", "failed write"},
	{"w retry", "wait before retry"},
	{"a abandoned", "abandoned by a restart"},
	{"a pending", "no outcome yet"},
	{"a status", "rollout status / event"},
}

func reportPhaseClass(phase string) string {
	switch phase {
	case projections.PhaseSucceeded:
		return "ok"
	case projections.PhaseFailed, projections.PhaseRolledBack:
		return "bad"
	case projections.PhasePaused:
		return "warn"
	}
	return "info"
}

// Pod states, as the report sums a pod up.
const (
	reportUpdated = "updated"  // a write that updates it (patch, resize, recreate) succeeded
	reportFailed  = "failed"   // not updated, and its last failure was one a retry does not cure
	reportGone    = "gone"     // not updated, and its last failure said the pod is gone
	reportNotDone = "not done" // anything else: in flight, retrying, or left in doubt by a restart
)

func reportPodState(acts []*reportSpan) string {
	last, open := "", false
	for _, a := range acts {
		switch a.outcome() {
		case tracing.OutcomeSucceeded:
			switch planner.ActionKind(a.kind()) {
			case planner.Patch, planner.Resize, planner.Recreate:
				return reportUpdated
			}
		case tracing.OutcomeFailed:
			last = a.a.str(tracing.AttrErrorClass)
		case tracing.OutcomeAbandoned:
		default:
			open = true
		}
	}
	switch {
	case open:
		return reportNotDone
	case last == journal.ClassGone:
		return reportGone
	case last == journal.ClassInvalid || last == journal.ClassOther:
		// Even when the pod was ungated after it (a paused rollout
		// releases its gated pods): the update itself failed.
		return reportFailed
	}
	return reportNotDone
}

func reportMaxTry(acts []*reportSpan) int64 {
	var t int64
	for _, a := range acts {
		t = max(t, a.try())
	}
	return t
}

// reportSeg is a stretch of a pod's timeline: an action, or the wait
// between two.
type reportSeg struct {
	class      string // CSS class: "a <kind> [fail|abandoned|pending] [retry]" or "w <wait>"
	agg        int    // aggregate layer, see reportAggClasses
	from, to   time.Time
	act        *reportSpan // nil for a wait
	prev, next *reportSpan // a wait's neighbours (next nil: until the journal's end)
	wait       string
}

// Aggregate layers, bottom to top.
var reportAggClasses = []string{"w grace", "w verify", "w retry", "w other"}

const (
	reportAggGrace = iota
	reportAggVerify
	reportAggRetry
	reportAggOther
)

// reportSegments lays a pod's actions out with the waits between them:
// after a gate the grace period, after a patch the verify wait, after a
// failure the wait before the retry. A pod still in flight at the end of
// the journal waits until then.
func reportSegments(pod *reportSpan, acts []*reportSpan, end time.Time) []reportSeg {
	var segs []reportSeg
	for i, a := range acts {
		segs = append(segs, reportSeg{class: reportActionClass(a), agg: reportActionAgg(a), from: a.start, to: a.end, act: a})
		var next *reportSpan
		until := end
		if i+1 < len(acts) {
			next = acts[i+1]
			until = next.start
		} else if !pod.open() {
			continue
		}
		wait, agg := reportWaitAfter(a)
		if wait == "" || !until.After(a.end) {
			continue
		}
		segs = append(segs, reportSeg{class: "w " + wait, agg: agg, from: a.end, to: until, prev: a, next: next, wait: wait})
	}
	return segs
}

// reportWaitAfter names the wait that follows action a.
func reportWaitAfter(a *reportSpan) (string, int) {
	switch a.outcome() {
	case tracing.OutcomeFailed, tracing.OutcomeAbandoned:
		return "retry", reportAggRetry
	case tracing.OutcomeSucceeded:
	default:
		return "", 0 // still in flight: the action's own bar runs on
	}
	switch planner.ActionKind(a.kind()) {
	case planner.Gate:
		if strings.Contains(a.a.str(tracing.AttrAction), "label["+planner.HookLabel+"]="+planner.HookPreUpdate) {
			// The gate marked the pod for its pre-update hook: the patch
			// waits for the hook controller's release (and the grace).
			return "hook", reportAggGrace
		}
		return "grace", reportAggGrace
	case planner.Patch, planner.Resize:
		return "verify", reportAggVerify
	case planner.Ungate:
		if strings.Contains(a.a.str(tracing.AttrAction), "label["+planner.HookLabel+"]="+planner.HookPostUpdate) {
			return "hook", reportAggOther // held for its post-update hook
		}
		return "", 0 // back in service: nothing to wait for
	}
	return "other", reportAggOther
}

func reportActionClass(a *reportSpan) string {
	c := "a " + a.kind()
	switch a.outcome() {
	case tracing.OutcomeFailed:
		c += " fail"
	case tracing.OutcomeAbandoned:
		c += " abandoned"
	case tracing.OutcomeSucceeded:
	default:
		c += " pending"
	}
	if a.try() > 1 {
		c += " retry"
	}
	return c
}

func reportActionAgg(a *reportSpan) int {
	switch a.outcome() {
	case tracing.OutcomeFailed, tracing.OutcomeAbandoned:
		return reportAggRetry
	}
	switch planner.ActionKind(a.kind()) {
	case planner.Gate:
		return reportAggGrace
	case planner.Patch, planner.Resize, planner.Ungate:
		return reportAggVerify
	}
	return reportAggOther
}

func reportActionName(a *reportSpan) string {
	n := a.kind()
	if t := a.try(); t > 1 {
		n += " #" + strconv.FormatInt(t, 10)
	}
	return n
}

// reportActionTitle is an action's hover text: what, when, the records
// behind it, and what went wrong.
func reportActionTitle(sc reportScale, a *reportSpan, who string) string {
	var b strings.Builder
	b.WriteString(reportActionName(a))
	switch o := a.outcome(); o {
	case tracing.OutcomeSucceeded:
		b.WriteString(" — succeeded")
	case tracing.OutcomeFailed:
		fmt.Fprintf(&b, " — failed (%s)", a.a.str(tracing.AttrErrorClass))
	case tracing.OutcomeAbandoned:
		b.WriteString(" — abandoned by a controller restart: its outcome is unknown")
	default:
		b.WriteString(" — no outcome in the journal")
	}
	if who != "" {
		b.WriteString("\n" + who)
	}
	fmt.Fprintf(&b, "\n%s → %s (%s)", sc.offset(a.start), sc.offset(a.end), ReportDur(a.end.Sub(a.start)))
	fmt.Fprintf(&b, "\nrecords %s, planned at #%s", a.records(), a.a.str(tracing.AttrPlanSeq))
	if t := a.try(); t > 1 {
		fmt.Fprintf(&b, ", try %d", t)
	}
	if a.a.int(tracing.AttrAttempt) > 1 {
		fmt.Fprintf(&b, ", attempt %d", a.a.int(tracing.AttrAttempt))
	}
	names, from, to := a.a.strs(tracing.AttrContainers), a.a.strs(tracing.AttrImagesFrom), a.a.strs(tracing.AttrImagesTo)
	for i := range names {
		if i < len(from) && i < len(to) {
			fmt.Fprintf(&b, "\ncontainer %s: %s → %s", names[i], from[i], to[i])
		}
	}
	if rv := a.a.str(tracing.AttrResultVersion); rv != "" {
		b.WriteString("\nresourceVersion " + rv)
	}
	if e := a.errText(); e != "" {
		b.WriteString("\nerror: " + e)
	}
	b.WriteString("\naction: " + a.a.str(tracing.AttrAction))
	return b.String()
}

func reportActionBar(sc reportScale, a *reportSpan, who string) reportBar {
	bar := reportBar{Class: reportActionClass(a), Style: sc.style(a.start, a.end), Title: reportActionTitle(sc, a, who)}
	if sc.pct(a.end)-sc.pct(a.start) >= reportLabelMin {
		bar.Label = reportActionName(a) + " " + ReportDur(a.end.Sub(a.start))
	}
	return bar
}

// reportLabelMin is the narrowest bar (in % of the track) that gets a
// label written on it.
const reportLabelMin = 6.0

var reportWaitNames = map[string]string{
	"grace":  "grace period",
	"hook":   "lifecycle hook wait",
	"verify": "verify wait",
	"retry":  "wait before retry",
	"other":  "wait",
}

func reportPodRow(sc reportScale, pe *reportPodEntry) *reportRow {
	pod, acts, segs, state := pe.pod, pe.acts, pe.segs, pe.state
	key := pod.a.str(tracing.AttrPod)
	row := &reportRow{Pod: key, Name: pod.a.str(tracing.AttrPodName), Dur: ReportDur(pod.end.Sub(pod.start))}
	if run := pod.a.int(tracing.AttrRun); run > 1 {
		row.Name += " (run " + strconv.FormatInt(run, 10) + ")"
	}
	var t strings.Builder
	fmt.Fprintf(&t, "pod %s\nuid %s\nrevision %s\n%s, %s → %s (%s)\nrecords %s, %d writes, %d failed",
		key, pod.a.str(tracing.AttrPodUID), pod.a.str(tracing.AttrRevision), state,
		sc.offset(pod.start), sc.offset(pod.end), row.Dur, pod.records(),
		pod.a.int(tracing.AttrActions), pod.a.int(tracing.AttrFailures))
	if img := reportImages(pod); img != "" {
		t.WriteString("\n" + img)
	}
	row.Title = t.String()

	switch state {
	case reportFailed:
		row.Badges = append(row.Badges, reportBadge{"bad", "✗ failed", reportLastError(acts)})
	case reportGone:
		row.Badges = append(row.Badges, reportBadge{"info", "gone", reportLastError(acts)})
	case reportNotDone:
		row.Badges = append(row.Badges, reportBadge{"info", "… not done", "not updated by the end of the journal"})
	}
	abandoned, fails := 0, 0
	for _, a := range acts {
		switch a.outcome() {
		case tracing.OutcomeAbandoned:
			abandoned++
		case tracing.OutcomeFailed:
			fails++
		}
	}
	if abandoned > 0 {
		row.Badges = append(row.Badges, reportBadge{"warn", "⚠ abandoned", fmt.Sprintf("%d intent(s) abandoned by a controller restart", abandoned)})
	}
	if tr := reportMaxTry(acts); tr > 1 {
		row.Badges = append(row.Badges, reportBadge{"retry", "↻" + strconv.FormatInt(tr, 10), fmt.Sprintf("an action was tried %d times (%d failed attempts)", tr, fails+abandoned)})
	}

	for _, s := range segs {
		if s.act != nil {
			row.Bars = append(row.Bars, reportActionBar(sc, s.act, key))
			continue
		}
		name := reportWaitNames[s.wait]
		var b strings.Builder
		fmt.Fprintf(&b, "%s — %s\n%s\n%s → %s", name, ReportDur(s.to.Sub(s.from)), key, sc.offset(s.from), sc.offset(s.to))
		fmt.Fprintf(&b, "\nafter %s (outcome record #%s)", reportActionName(s.prev), s.prev.a.str(tracing.AttrOutcomeSeq))
		if s.next != nil {
			fmt.Fprintf(&b, "\nuntil %s intended (record #%s)", reportActionName(s.next), s.next.a.str(tracing.AttrSeq))
		} else {
			b.WriteString("\nstill waiting at the end of the journal")
		}
		bar := reportBar{Class: s.class, Style: sc.style(s.from, s.to), Title: b.String()}
		if sc.pct(s.to)-sc.pct(s.from) >= reportLabelMin {
			bar.Label = s.wait + " " + ReportDur(s.to.Sub(s.from))
		}
		row.Bars = append(row.Bars, bar)
	}
	return row
}

// reportLastError is the error of the pod's last failed action.
func reportLastError(acts []*reportSpan) string {
	for i := len(acts) - 1; i >= 0; i-- {
		if e := acts[i].errText(); e != "" {
			return e
		}
	}
	return ""
}

func reportImages(pod *reportSpan) string {
	names, from, to := pod.a.strs(tracing.AttrContainers), pod.a.strs(tracing.AttrImagesFrom), pod.a.strs(tracing.AttrImagesTo)
	var parts []string
	for i := range names {
		if i < len(from) && i < len(to) {
			parts = append(parts, names[i]+": "+from[i]+" → "+to[i])
		}
	}
	return strings.Join(parts, "; ")
}

func reportTableLine(sc reportScale, pe *reportPodEntry) reportPodLine {
	class := map[string]string{reportUpdated: "ok", reportFailed: "bad"}[pe.state]
	if class == "" {
		class = "info"
	}
	pod := pe.pod
	return reportPodLine{
		Pod: pod.a.str(tracing.AttrPod), Step: reportStepTitle(pe.step), State: pe.state, StateClass: class,
		Start: sc.offset(pod.start), Dur: ReportDur(pod.end.Sub(pod.start)),
		Writes: len(pe.acts), Failures: int(pod.a.int(tracing.AttrFailures)),
		Images: reportImages(pod), Records: pod.records(),
	}
}

func reportStepTitle(st *reportSpan) string {
	t := "Step " + st.a.str(tracing.AttrStep)
	if st.a.has(tracing.AttrStepPercent) {
		t += " · " + st.a.str(tracing.AttrStepPercent) + "%"
	}
	if run := st.a.int(tracing.AttrRun); run > 1 {
		t += " · run " + strconv.FormatInt(run, 10)
	}
	return t
}

// reportAggregate sums a step's pods up in one row: per time bucket, how
// many of them were in each layer on average, and a tick per failure.
func reportAggregate(sc reportScale, title string, pods []*reportPodEntry) *reportAgg {
	values := make([][]float64, len(reportAggClasses))
	for i := range values {
		values[i] = make([]float64, reportAggBuckets)
	}
	w := float64(sc.total) / reportAggBuckets
	updated, failed := 0, 0
	var durs []time.Duration
	agg := &reportAgg{values: values, Label: fmt.Sprintf("%d pods", len(pods))}
	for _, pe := range pods {
		switch pe.state {
		case reportUpdated:
			updated++
		case reportFailed:
			failed++
		}
		durs = append(durs, pe.pod.end.Sub(pe.pod.start))
		for _, s := range pe.segs {
			a, b := float64(s.from.Sub(sc.t0)), float64(s.to.Sub(sc.t0))
			for i := max(int(a/w), 0); i < reportAggBuckets && float64(i)*w < b; i++ {
				lo, hi := math.Max(a, float64(i)*w), math.Min(b, float64(i+1)*w)
				if hi > lo {
					values[s.agg][i] += (hi - lo) / w
				}
			}
		}
		for _, a := range pe.acts {
			if o := a.outcome(); (o == tracing.OutcomeFailed || o == tracing.OutcomeAbandoned) && len(agg.Bars) < reportMaxAggMarks {
				agg.Bars = append(agg.Bars, reportBar{Class: "tick fail", Style: template.CSS("left:" + reportPct(sc.pct(a.start)) + "%"),
					Title: reportActionTitle(sc, a, a.a.str(tracing.AttrPod))})
			}
		}
	}
	agg.Title = fmt.Sprintf("%s: %d pods, %d updated, %d failed\npod time median %s, p95 %s, max %s",
		title, len(pods), updated, failed, ReportDur(reportQuantile(durs, 0.5)), ReportDur(reportQuantile(durs, 0.95)), ReportDur(reportQuantile(durs, 1)))
	return agg
}

// peak is the most pods in flight in one bucket.
func (agg *reportAgg) peak() float64 {
	var peak float64
	for i := range reportAggBuckets {
		var sum float64
		for _, l := range agg.values {
			sum += l[i]
		}
		peak = math.Max(peak, sum)
	}
	return peak
}

// draw makes the layers stacked step areas in a 1000×100 viewBox, scaled
// to peak (the same for every step of a rollout, so they compare).
func (agg *reportAgg) draw(peak float64) {
	peak = math.Max(peak, 1)
	agg.Peak = "peak " + strconv.FormatFloat(math.Round(peak*10)/10, 'f', -1, 64) + " pods"
	x := func(i int) string { return strconv.FormatFloat(float64(i)*1000/reportAggBuckets, 'f', 1, 64) }
	y := func(v float64) string { return strconv.FormatFloat(100-v/peak*96, 'f', 1, 64) }
	base := make([]float64, reportAggBuckets)
	for li, l := range agg.values {
		if slices.Max(l) == 0 {
			continue
		}
		top := make([]float64, reportAggBuckets)
		for i := range l {
			top[i] = base[i] + l[i]
		}
		var d strings.Builder
		d.WriteString("M0," + y(base[0]))
		for i := range top {
			d.WriteString("L" + x(i) + "," + y(top[i]) + "L" + x(i+1) + "," + y(top[i]))
		}
		for i := reportAggBuckets - 1; i >= 0; i-- {
			d.WriteString("L" + x(i+1) + "," + y(base[i]) + "L" + x(i) + "," + y(base[i]))
		}
		d.WriteString("Z")
		agg.Layers = append(agg.Layers, reportLayer{Class: reportAggClasses[li], D: d.String()})
		base = top
	}
	agg.values = nil
}

// reportQuantile is the q-quantile (0 < q <= 1) of ds, nearest rank.
func reportQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// reportKindOrder lists action kinds in the order of a pod's life, then
// the rollout's own writes, then any others.
func reportKindOrder(m map[string]*reportWrites) []string {
	known := []planner.ActionKind{planner.Gate, planner.Patch, planner.Resize, planner.Recreate, planner.Ungate, planner.Status, planner.Event}
	var out []string
	seen := map[string]bool{}
	for _, k := range known {
		if m[string(k)] != nil {
			out = append(out, string(k))
			seen[string(k)] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// reportAxis picks a round tick interval giving 5 to 12 ticks.
func reportAxis(sc reportScale) ([]reportTick, template.CSS) {
	steps := []time.Duration{
		time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
		50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if sc.total/s <= 10 {
			step = s
			break
		}
	}
	var ticks []reportTick
	for t := time.Duration(0); t <= sc.total; t += step {
		ticks = append(ticks, reportTick{
			Style: template.CSS("left:" + reportPct(sc.pct(sc.t0.Add(t))) + "%"),
			Label: "+" + reportAxisLabel(t),
		})
	}
	every := reportPct(float64(step) / float64(sc.total) * 100)
	grid := template.CSS("background-image:repeating-linear-gradient(90deg,#e5e7eb 0,#e5e7eb 1px,transparent 1px,transparent " + every + "%)")
	return ticks, grid
}

func reportAxisLabel(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// reportDur rounds a duration to what a reader needs: milliseconds under
// a second, ten milliseconds under a minute, seconds above.
// ReportDur is a duration as the report prints it.
func ReportDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func reportTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 MST") }
