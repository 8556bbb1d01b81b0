package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// The test world stands in for the apiserver, the StatefulSet controller,
// the kubelets and the actuator. It journals what each would: every object
// change is an Observed record with a new resourceVersion, every action an
// ActionIntended followed by ActionSucceeded (with the new resourceVersion)
// or ActionFailed, and time moves only through Tick records. Records are
// folded into a projections.State as they are written, exactly as the
// controller's loop folds them, and kept so that a fresh State can be
// folded from them to check that planning depends on nothing else.

const testNS = "shop"

// epoch is the world's start: an arbitrary whole second.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()

const zoneLabel = "topology.kubernetes.io/zone"

type world struct {
	tb   testing.TB
	now  int64
	seq  uint64
	rv   uint64
	uids int
	cids int

	records []journal.Record
	state   *projections.State
	// inc plans beside Plan at every plan, fed what the records touched,
	// and must agree with it.
	inc *Incremental

	nodes    map[string]*journal.Observed // by name
	sets     map[string]*fleet            // by name
	pods     map[string]*journal.Observed // "ns/name"
	rollouts map[string]*journal.Observed // "ns/name"
	// imageIDs overrides the imageID the "registry" resolves an image to
	// (a digest pin the registry does not honour).
	imageIDs map[string]string
	// sick holds pods whose containers the kubelet keeps unready (an
	// outside reason: a failing probe), by pod key.
	sick map[string]bool
	// pullFail holds pods on whose node no new image pulls (a registry
	// outage for that node), by pod key.
	pullFail map[string]bool
	// started remembers containers that ran once, by "uid/name", so a
	// restart counts.
	started map[string]bool
	// queue holds the watch events of writes not yet journaled (the sim
	// delays them to model a lagging watch).
	queue []journal.Observed
	// lagWatch queues observations instead of journaling them at once.
	lagWatch bool
	// freshEvery: fold a fresh state and compare its plan every this many
	// plans (0: every plan).
	freshEvery int
	plans      int
	// held are actions intended (by the script's intend) and not carried out.
	held []Action
	// hookCtl: a hook controller runs with the kubelets and releases every
	// pod marked for a lifecycle hook at its next sync.
	hookCtl bool
	// measures queues, per analysis check name, the verdict and value of
	// its next measurements ("Pass:0.01"); an empty queue measures Pass:1.
	measures map[string][]string

	// Bookkeeping for invariants.
	patches map[string]int // "uid/rev" → patches that landed
	// recreated maps a replacement pod's UID to the revision of the
	// Recreate action that deleted its predecessor.
	recreated map[string]string
	// recreates counts recreates that landed, by "pod key/revision".
	recreates map[string]int
	// outside holds pods made unavailable by something other than
	// Rollbook (a chaos delete, a sick container), until they are Ready
	// again.
	outside map[string]bool
}

// fleet is a StatefulSet with updateStrategy OnDelete (unless told
// otherwise) and its template.
type fleet struct {
	obs      *journal.Observed
	gate     bool
	noCond   bool // pods start without the gate condition
	nodes    []string
	spread   string
	revN     int
	podSpec  string
	replicas int
	lagged   string // update revision the controller has not published yet
	tmpl     *journal.TemplateFacts
	// admission: pods get what a real cluster's admission adds to them (a
	// topology label, an injected sidecar and annotation).
	admission bool
}

func newWorld(tb testing.TB) *world {
	w := &world{
		tb: tb, now: epoch, state: projections.New(),
		nodes: map[string]*journal.Observed{}, sets: map[string]*fleet{},
		pods: map[string]*journal.Observed{}, rollouts: map[string]*journal.Observed{},
		imageIDs: map[string]string{}, sick: map[string]bool{}, pullFail: map[string]bool{}, started: map[string]bool{},
		patches: map[string]int{}, recreated: map[string]string{}, recreates: map[string]int{}, outside: map[string]bool{},
	}
	w.state.Track()
	w.inc = NewIncremental()
	w.tick(0)
	return w
}

// emit journals one record and folds it.
func (w *world) emit(kind journal.Kind, key string, body any) {
	w.tb.Helper()
	b, err := journal.EncodeBody(body)
	if err != nil {
		w.tb.Fatalf("encode %s %s: %v", kind, key, err)
	}
	w.seq++
	r := journal.Record{Seq: w.seq, Time: time.Unix(0, w.now).UTC(), Kind: kind, Key: key, Body: b}
	w.records = append(w.records, r)
	if err := w.state.Apply(r); err != nil {
		w.tb.Fatalf("apply record %d: %v", r.Seq, err)
	}
}

// tick moves time forward by d and journals it.
func (w *world) tick(d time.Duration) {
	w.now += int64(d)
	w.emit(journal.KindTick, "tick", journal.TickFact{Reason: "test"})
}

// write stamps o with a new resourceVersion and sends its watch event
// (at once, or into the lagging queue).
func (w *world) write(o *journal.Observed) string {
	w.rv++
	o.ResourceVersion = fmt.Sprint(w.rv)
	snap := clone(o)
	if w.lagWatch {
		w.queue = append(w.queue, snap)
	} else {
		w.observe(snap)
	}
	return o.ResourceVersion
}

func (w *world) observe(o journal.Observed) {
	w.emit(journal.KindObserved, o.Resource+"/"+o.Namespace+"/"+o.Name, o)
}

// flush journals the queued watch events, oldest first.
func (w *world) flush() {
	q := w.queue
	w.queue = nil
	for _, o := range q {
		w.observe(o)
	}
}

// clone deep-copies an object through its encoding.
func clone(o *journal.Observed) journal.Observed {
	b, err := journal.EncodeBody(o)
	if err != nil {
		panic(err)
	}
	var c journal.Observed
	if err := journal.DecodeBody(b, &c); err != nil {
		panic(err)
	}
	return c
}

func (w *world) uid(prefix string) string {
	w.uids++
	return fmt.Sprintf("%s-uid-%d", prefix, w.uids)
}

func shortHash(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:8]
}

// addNodes makes sure n nodes exist spread over zones and returns their
// names.
func (w *world) addNodes(n, zones int) []string {
	var names []string
	for i := range n {
		zone := fmt.Sprintf("zone-%c", 'a'+i%zones)
		name := fmt.Sprintf("node-%d", i)
		names = append(names, name)
		if _, ok := w.nodes[name]; ok {
			continue
		}
		o := &journal.Observed{Resource: "nodes", Name: name, UID: w.uid("node"), Created: w.now,
			Node: &journal.NodeFacts{Ready: true, Labels: map[string]string{zoneLabel: zone, "kubernetes.io/hostname": name}}}
		w.nodes[name] = o
		w.write(o)
	}
	return names
}

// containerSpec is one template container.
type containerSpec struct {
	name, image, env string
	requests, limits map[string]string
}

// container is the template's view of it, as ingest reduces it: env is
// one of the fields kept only as a hash.
func (c containerSpec) container() journal.TemplateContainer {
	tc := journal.TemplateContainer{Name: c.name, Image: c.image, Requests: maps.Clone(c.requests), Limits: maps.Clone(c.limits)}
	if c.env != "" {
		tc.Fields = map[string][]byte{"env": shortHash("env=" + c.env)}
	}
	return tc
}

// addFleet creates a StatefulSet and its pods, running and ready.
func (w *world) addFleet(name string, replicas int, nodes []string, spread, strategy string, gate, noCond, admission bool, cs []containerSpec, labels, annotations map[string]string) *fleet {
	f := &fleet{gate: gate, noCond: noCond, nodes: nodes, spread: spread, replicas: replicas, admission: admission}
	o := &journal.Observed{Resource: "statefulsets.apps", Namespace: testNS, Name: name, UID: w.uid("sts"), Generation: 1, Created: w.now,
		Labels: map[string]string{"app": name},
		Workload: &journal.WorkloadFacts{Kind: "StatefulSet", UpdateStrategy: strategy, Replicas: int32(replicas),
			Selector: map[string]string{"app": name}}}
	f.obs = o
	w.sets[name] = f
	w.setTemplate(f, cs, "", labels, annotations)
	o.Workload.CurrentRevision = o.Workload.UpdateRevision
	for i := range replicas {
		p := w.newPod(f, i)
		w.runContainers(p)
		if gate && !noCond {
			setCondition(p.Pod, GateCondition, "True", ReasonReady, "initial: no update in progress", w.now)
		}
		w.updateReady(p)
		w.pods[podKey(p)] = p
		w.write(p)
	}
	w.syncFleet(f)
	return f
}

// setTemplate sets a new pod template: a new update revision, and its
// ControllerRevision, as the StatefulSet controller writes it.
func (w *world) setTemplate(f *fleet, cs []containerSpec, podSpec string, labels, annotations map[string]string) {
	f.revN++
	f.podSpec = podSpec
	t := &journal.TemplateFacts{Labels: maps.Clone(labels), Annotations: maps.Clone(annotations)}
	for _, c := range cs {
		t.Containers = append(t.Containers, c.container())
	}
	if podSpec != "" {
		t.Fields = map[string][]byte{"volumes": shortHash("pod=" + podSpec)}
	}
	f.tmpl = t
	wf := f.obs.Workload
	wf.UpdateRevision = fmt.Sprintf("%s-r%d", f.obs.Name, f.revN)
	f.obs.Generation++
	wf.ObservedGeneration = f.obs.Generation
	w.write(&journal.Observed{Resource: "controllerrevisions.apps", Namespace: testNS, Name: wf.UpdateRevision, UID: w.uid("rev"), Created: w.now,
		Owner:    &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: f.obs.Name, UID: f.obs.UID},
		Revision: &journal.RevisionFacts{Revision: int64(f.revN), Template: t}})
}

// newImage gives the fleet's template app:v2.
func newImage(w *world, f *fleet) {
	cs := f.template()
	cs[0].image = "app:v2"
	w.setTemplate(f, cs, "", f.tmpl.Labels, f.tmpl.Annotations)
	w.write(f.obs)
}

// forgetRevision deletes a ControllerRevision.
func (w *world) forgetRevision(name string) {
	w.write(&journal.Observed{Resource: "controllerrevisions.apps", Namespace: testNS, Name: name, UID: "gone", Deleted: true})
}

// template returns a fleet's template containers as container specs.
func (f *fleet) template() []containerSpec {
	var out []containerSpec
	for _, c := range f.tmpl.Containers {
		out = append(out, containerSpec{name: c.Name, image: c.Image, requests: maps.Clone(c.Requests), limits: maps.Clone(c.Limits)})
	}
	return out
}

func podKey(p *journal.Observed) string { return p.Namespace + "/" + p.Name }

// newPod creates pod ordinal i of f from its current template, scheduled
// but not started.
func (w *world) newPod(f *fleet, i int) *journal.Observed {
	wf := f.obs.Workload
	node := f.nodes[i%len(f.nodes)]
	if f.spread == "block" {
		node = f.nodes[i*len(f.nodes)/f.replicas]
	}
	name := fmt.Sprintf("%s-%d", f.obs.Name, i)
	labels := maps.Clone(f.tmpl.Labels)
	labels[RevisionLabel] = wf.UpdateRevision
	// As the StatefulSet controller labels its pods (the fold keeps these
	// two implied by the name: projections.Implied).
	labels[projections.PodNameLabel], labels[projections.PodIndexLabel] = name, strconv.Itoa(i)
	p := &journal.Observed{Resource: "pods", Namespace: testNS, Name: name, UID: w.uid("pod"),
		Labels: labels, Created: w.now,
		Owner: &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: f.obs.Name, UID: f.obs.UID},
		Pod:   &journal.PodFacts{NodeName: node, Phase: "Pending"}}
	for k := range f.tmpl.Annotations {
		p.AnnotationKeys = append(p.AnnotationKeys, k)
	}
	if f.admission {
		// What admission adds to a real pod and no template names: a
		// label copied from its node, an injected sidecar, an annotation.
		p.Labels[zoneLabel] = w.nodes[node].Node.Labels[zoneLabel]
		p.AnnotationKeys = append(p.AnnotationKeys, "mesh.example/injected")
	}
	slices.Sort(p.AnnotationKeys)
	p.HasAnnotations = len(p.AnnotationKeys) > 0
	if f.gate {
		p.Pod.ReadinessGates = []string{GateCondition}
	}
	for _, c := range f.tmpl.Containers {
		p.Pod.Containers = append(p.Pod.Containers, journal.Container{Name: c.Name, Image: c.Image,
			Requests: maps.Clone(c.Requests), Limits: maps.Clone(c.Limits), State: "waiting:ContainerCreating"})
	}
	if f.admission {
		p.Pod.Containers = append(p.Pod.Containers, journal.Container{Name: "mesh-proxy", Image: "mesh-proxy:1.0", State: "waiting:ContainerCreating"})
	}
	p.Pod.QOSClass = qosAfter(facts(p.Pod), nil)
	setCondition(p.Pod, "Ready", "False", "ContainersNotReady", "", w.now)
	return p
}

// setCondition sets a pod condition; its transition time moves only when
// its status does.
func setCondition(f *journal.PodFacts, typ, status, reason, message string, now int64) bool {
	for i := range f.Conditions {
		c := &f.Conditions[i]
		if c.Type == typ {
			changed := c.Status != status || c.Reason != reason || c.Message != message
			if c.Status != status {
				c.LastTransition = now
			}
			c.Status, c.Reason, c.Message = status, reason, message
			return changed
		}
	}
	f.Conditions = append(f.Conditions, journal.Condition{Type: typ, Status: status, Reason: reason, Message: message, LastTransition: now})
	return true
}

// updateReady computes Ready as the kubelet does: every container ready
// and every readiness gate's condition True.
func (w *world) updateReady(p *journal.Observed) bool {
	ready := len(p.Pod.Containers) > 0
	for _, c := range p.Pod.Containers {
		ready = ready && c.Ready
	}
	reason := "ContainersNotReady"
	if ready {
		reason = ""
		for _, g := range p.Pod.ReadinessGates {
			c := conditionOf(p.Pod, g)
			if c == nil || c.Status != "True" {
				ready, reason = false, "ReadinessGatesNotReady"
			}
		}
	}
	if ready {
		return setCondition(p.Pod, "Ready", "True", "", "", w.now)
	}
	return setCondition(p.Pod, "Ready", "False", reason, "", w.now)
}

func conditionOf(f *journal.PodFacts, typ string) *journal.Condition {
	for i := range f.Conditions {
		if f.Conditions[i].Type == typ {
			return &f.Conditions[i]
		}
	}
	return nil
}

// imageID is the digest the registry resolves image to. A tag containing
// "samedigest" is a retag of the image the container ran before.
func (w *world) imageID(image, prev string) string {
	if id, ok := w.imageIDs[image]; ok {
		return id
	}
	if strings.Contains(image, "samedigest") && prev != "" {
		return prev
	}
	if repo, digest, ok := strings.Cut(image, "@"); ok {
		return "registry.test/" + repo + "@" + digest
	}
	repo, _, _ := strings.Cut(image, ":")
	sum := sha256.Sum256([]byte(image))
	return "registry.test/" + repo + "@sha256:" + hex.EncodeToString(sum[:6])
}

// runContainers is the kubelet's sync of one pod: start containers whose
// spec image differs from what runs, apply resizes. It reports whether
// anything changed.
func (w *world) runContainers(p *journal.Observed) bool {
	changed := false
	for i := range p.Pod.Containers {
		c := &p.Pod.Containers[i]
		if c.StatusImage != c.Image {
			changed = true
			id := p.UID + "/" + c.Name
			c.StatusImage = c.Image
			if strings.Contains(c.Image, "bad") || w.pullFail[podKey(p)] {
				c.State, c.Ready, c.Started, c.ImageID, c.ContainerID = "waiting:ErrImagePull", false, false, "", ""
				continue
			}
			w.cids++
			c.ImageID = w.imageID(c.Image, c.ImageID)
			c.ContainerID = fmt.Sprintf("containerd://c%04d", w.cids)
			if w.started[id] {
				c.RestartCount++
			}
			w.started[id] = true
			c.State, c.Started, c.Ready = "running", true, true
		}
		if !reflect.DeepEqual(c.ActualRequests, c.Requests) || !reflect.DeepEqual(c.ActualLimits, c.Limits) {
			c.ActualRequests, c.ActualLimits = maps.Clone(c.Requests), maps.Clone(c.Limits)
			changed = true
		}
		if c.State == "running" {
			ready := !w.sick[podKey(p)]
			if c.Ready != ready {
				c.Ready, changed = ready, true
			}
		}
	}
	if p.Pod.Phase != "Running" {
		p.Pod.Phase, changed = "Running", true
	}
	return changed
}

// kubelet runs every kubelet once (or only for the named pods) and
// returns the pods it changed.
func (w *world) kubelet(only ...string) []string {
	var out []string
	for _, k := range keysSorted(w.pods) {
		p := w.pods[k]
		if len(only) > 0 && !slices.Contains(only, p.Name) {
			continue
		}
		c := w.runContainers(p)
		if w.hookCtl && w.releaseHook(p) {
			c = true
		}
		if w.updateReady(p) || c {
			w.write(p)
			out = append(out, p.Name)
		}
		if podReady(facts(p.Pod)) {
			delete(w.outside, k)
		}
	}
	w.syncFleets()
	return out
}

func (w *world) syncFleets() {
	for _, n := range keysSorted(w.sets) {
		w.syncFleet(w.sets[n])
	}
}

// syncFleet is the StatefulSet controller: it recreates missing pods from
// the current template and counts updated and ready replicas by the
// revision label, as `kubectl rollout status` does.
func (w *world) syncFleet(f *fleet) {
	wf := f.obs.Workload
	var updated, ready int32
	for i := range f.replicas {
		k := testNS + "/" + fmt.Sprintf("%s-%d", f.obs.Name, i)
		p := w.pods[k]
		if p == nil {
			p = w.newPod(f, i)
			w.pods[k] = p
			w.write(p)
		}
		if p.Labels[RevisionLabel] == wf.UpdateRevision {
			updated++
		}
		if podReady(facts(p.Pod)) {
			ready++
		}
	}
	if f.obs.ResourceVersion == "" || wf.UpdatedReplicas != updated || wf.ReadyReplicas != ready {
		wf.UpdatedReplicas, wf.ReadyReplicas = updated, ready
		w.write(f.obs)
	}
}

// deletePod deletes a pod; its StatefulSet recreates it at once unless
// told otherwise.
func (w *world) deletePod(k string, recreate bool) string {
	p := w.pods[k]
	delete(w.pods, k)
	gone := clone(p)
	gone.Deleted = true
	rv := w.write(&gone)
	if recreate && p.Owner != nil {
		if f := w.sets[p.Owner.Name]; f != nil {
			w.syncFleet(f)
		}
	}
	return rv
}

// addRollout creates or updates a rollout from its spec (JSON).
func (w *world) addRollout(name string, spec []byte) {
	k := testNS + "/" + name
	r := w.rollouts[k]
	if r == nil {
		r = &journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: testNS, Name: name, UID: w.uid("ipr"), Created: w.now}
		w.rollouts[k] = r
	}
	r.Generation++
	r.Spec = spec
	w.write(r)
}

func (w *world) deleteRollout(name string) {
	k := testNS + "/" + name
	r := w.rollouts[k]
	delete(w.rollouts, k)
	gone := clone(r)
	gone.Deleted = true
	w.write(&gone)
}

// fact is the generic part of an action's records, as the actuator writes it.
func (w *world) fact(a Action) journal.ActionFact {
	return journal.ActionFact{Key: a.Key(), Kind: string(a.Kind), Rollout: a.Rollout, Pod: a.Pod, UID: a.UID, Revision: a.Revision, Attempt: 1}
}

// intend journals an action's intent, with the action encoded for replay.
func (w *world) intend(a Action) {
	w.tb.Helper()
	f := w.fact(a)
	f.PlanSeq = w.state.Seq
	body, err := journal.EncodeBody(a)
	if err != nil {
		w.tb.Fatalf("encode %s: %v", a, err)
	}
	// Replay decodes the intent's action and compares it with the one it
	// derives: the encoding must round-trip.
	var back Action
	if err := journal.DecodeBody(body, &back); err != nil {
		w.tb.Fatalf("decode %s: %v", a, err)
	}
	if back.String() != a.String() || back.Key() != a.Key() {
		w.tb.Fatalf("action does not round-trip through its encoding:\n  %s\n  %s", a, back)
	}
	f.Action = body
	w.emit(journal.KindActionIntended, a.Key(), f)
}

// succeed journals a success with the resourceVersion the write returned;
// a measurement's success carries its value and verdict.
func (w *world) succeed(a Action, rv string) {
	f := w.fact(a)
	f.ResultVersion = rv
	if a.Kind == Measure {
		f.Measurement = w.measurement(a)
	}
	w.emit(journal.KindActionSucceeded, a.Key(), f)
}

// measurement is the next measurement of a's check, as the script queued.
func (w *world) measurement(a Action) *journal.Measurement {
	m := &journal.Measurement{Check: a.Check.Name, Step: a.Step, Provider: "prometheus", Condition: a.Check.SuccessCondition, Verdict: journal.VerdictPass, Value: "1"}
	if a.Check.Prometheus != nil {
		m.Query = a.Check.Prometheus.Query
	}
	if q := w.measures[a.Check.Name]; len(q) > 0 {
		m.Verdict, m.Value, _ = strings.Cut(q[0], ":")
		w.measures[a.Check.Name] = q[1:]
		if m.Verdict == journal.VerdictError || m.Verdict == journal.VerdictInvalid {
			m.Error, m.Value = m.Value, ""
		}
	}
	return m
}

func (w *world) fail(a Action, class string) {
	f := w.fact(a)
	f.Class, f.Error = class, "injected "+class
	w.emit(journal.KindActionFailed, a.Key(), f)
}

// perform is the apiserver's side of an action: it checks the action's
// preconditions as the real requests would and changes the object. It
// returns the resourceVersion written, or the failure class.
func (w *world) perform(a Action) (rv, class string) {
	switch a.Kind {
	case Measure:
		return "", "" // reads a metric; writes nothing
	case Status, Event:
		r := w.rollouts[a.Rollout]
		if r == nil {
			return "", journal.ClassGone
		}
		if r.UID != a.RolloutUID {
			return "", journal.ClassConflict
		}
		if a.Kind == Event {
			return "", "" // nothing waits on an event
		}
		b, err := json.Marshal(a.Status)
		if err != nil {
			w.tb.Fatalf("status: %v", err)
		}
		r.Status = b
		return w.write(r), ""
	}
	p := w.pods[a.Pod]
	if p == nil {
		return "", journal.ClassGone
	}
	if p.UID != a.UID {
		return "", journal.ClassConflict
	}
	f := p.Pod
	switch a.Kind {
	case Gate, Ungate:
		status := "False"
		if a.Kind == Ungate {
			status = "True"
		}
		setCondition(f, GateCondition, status, a.Reason, a.Message, w.now)
		// A strategic merge patch of pods/status: labels set and removed
		// (an absent one is no error), hook release conditions cleared.
		if len(a.Labels) > 0 && p.Labels == nil {
			p.Labels = map[string]string{}
		}
		maps.Copy(p.Labels, a.Labels)
		for _, k := range a.RemoveLabels {
			delete(p.Labels, k)
		}
		for _, c := range a.ClearConditions {
			setCondition(f, c, "False", ReasonHookWaiting, "", w.now)
		}
		w.updateReady(p)
	case Patch:
		// The JSON patch's tests: container name and old image at the index,
		// and the maps it creates absent (or present when it does not).
		for _, c := range a.Images {
			list := f.Containers
			if c.Init {
				list = f.InitContainers
			}
			if c.Index >= len(list) || list[c.Index].Name != c.Name || list[c.Index].Image != c.From {
				return "", journal.ClassConflict
			}
		}
		if a.CreateAnnotations == p.HasAnnotations {
			return "", journal.ClassConflict
		}
		if len(a.Labels) > 0 && a.CreateLabels != (len(p.Labels) == 0) {
			return "", journal.ClassConflict
		}
		// A JSON-patch remove of an absent key fails the whole patch.
		for _, k := range a.RemoveLabels {
			if _, ok := p.Labels[k]; !ok {
				return "", journal.ClassConflict
			}
		}
		for _, k := range a.RemoveAnnotations {
			if !slices.Contains(p.AnnotationKeys, k) {
				return "", journal.ClassConflict
			}
		}
		for _, k := range a.RemoveLabels {
			delete(p.Labels, k)
		}
		p.AnnotationKeys = slices.DeleteFunc(p.AnnotationKeys, func(k string) bool { return slices.Contains(a.RemoveAnnotations, k) })
		for k := range a.Annotations {
			if !slices.Contains(p.AnnotationKeys, k) {
				p.AnnotationKeys = append(p.AnnotationKeys, k)
			}
		}
		slices.Sort(p.AnnotationKeys)
		for _, c := range a.Images {
			if c.Init {
				f.InitContainers[c.Index].Image = c.To
			} else {
				f.Containers[c.Index].Image = c.To
			}
		}
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		maps.Copy(p.Labels, a.Labels)
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[StateAnnotation] = a.State
		p.HasAnnotations = true
		w.patches[p.UID+"/"+a.Revision]++
	case Resize:
		for _, r := range a.Resources {
			i := slices.IndexFunc(f.Containers, func(c journal.Container) bool { return c.Name == r.Name })
			if i < 0 {
				return "", journal.ClassInvalid
			}
			f.Containers[i].Requests, f.Containers[i].Limits = maps.Clone(r.Requests), maps.Clone(r.Limits)
		}
	case Recreate:
		w.recreates[a.Pod+"/"+a.Revision]++
		rv := w.deletePod(a.Pod, false)
		if p.Owner != nil {
			if fl := w.sets[p.Owner.Name]; fl != nil {
				w.syncFleet(fl)
				w.recreated[w.pods[a.Pod].UID] = a.Revision
			}
		}
		return rv, ""
	default:
		w.tb.Fatalf("unknown action %s", a)
	}
	return w.write(p), ""
}

// do carries out one action as the actuator does: intent, write, outcome,
// and then the watch event of the write. fail, when set, is the class the
// write fails with instead.
func (w *world) do(a Action, fail string) (class string) {
	w.intend(a)
	if fail != "" {
		w.fail(a, fail)
		return fail
	}
	rv, class := w.perform(a)
	if class != "" {
		w.fail(a, class)
		return class
	}
	w.succeed(a, rv)
	if !w.lagWatch {
		w.flush()
		w.syncFleets()
	}
	return ""
}

// plan plans, checking on the way that planning is a function of the
// journal alone: planning twice gives the same result, and so does a state
// folded afresh from the same records.
func (w *world) plan() Result {
	w.tb.Helper()
	res := Plan(w.state)
	if again := Plan(w.state); !reflect.DeepEqual(res, again) {
		w.tb.Fatalf("planning twice differs:\n%s\n----\n%s", formatResult(res, w.now), formatResult(again, w.now))
	}
	if inc := w.inc.Plan(w.state, w.state.TakeTouched()); !reflect.DeepEqual(res, inc) {
		w.tb.Fatalf("the incremental planner (%d full plans, %d partial) plans differently from Plan:\n%s\n----\n%s", w.inc.Full, w.inc.Partial, formatResult(res, w.now), formatResult(inc, w.now))
	}
	if err := w.inc.claimsAgree(); err != nil {
		w.tb.Fatalf("the incremental planner's claims after %d full plans, %d partial: %v", w.inc.Full, w.inc.Partial, err)
	}
	w.plans++
	if w.freshEvery > 0 && w.plans%w.freshEvery != 0 {
		return res
	}
	fresh := projections.New()
	for _, r := range w.records {
		if err := fresh.Apply(r); err != nil {
			w.tb.Fatal(err)
		}
	}
	if other := Plan(fresh); !reflect.DeepEqual(res, other) {
		w.tb.Fatalf("a state folded afresh from the same records plans differently:\n%s\n----\n%s", formatResult(res, w.now), formatResult(other, w.now))
	}
	return res
}

func formatResult(res Result, now int64) string {
	var b strings.Builder
	for _, a := range res.Actions {
		fmt.Fprintln(&b, a.String())
	}
	b.WriteString(formatWake(res.WakeAt, now))
	return b.String()
}

func formatWake(at, now int64) string {
	if at == 0 {
		return "wake none"
	}
	return fmt.Sprintf("wake +%s", time.Duration(at-now))
}

func sortedKeysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rolloutStatus is the rollout's status as last written.
func (w *world) rolloutStatus(name string) (projections.RolloutStatus, bool) {
	r := w.rollouts[testNS+"/"+name]
	var st projections.RolloutStatus
	if r == nil || len(r.Status) == 0 {
		return st, false
	}
	if err := json.Unmarshal(r.Status, &st); err != nil {
		w.tb.Fatal(err)
	}
	return st, true
}

// releaseHook is a hook controller's work on one pod: a pod marked for a
// hook of a rollout, and not released, gets the release the hook names.
// It reports whether it changed the pod (the caller writes it).
func (w *world) releaseHook(p *journal.Observed) bool {
	which := p.Labels[HookLabel]
	for _, k := range keysSorted(w.state.Rollouts) {
		var h *projections.LifecycleHook
		switch spec := w.state.Rollouts[k].Spec; which {
		case HookPreUpdate:
			h = preHook(spec)
		case HookPostUpdate:
			h = postHook(spec)
		}
		switch {
		case h == nil:
			continue
		case h.Label != nil:
			if p.Labels[h.Label.Key] == h.Label.Value {
				return false
			}
			p.Labels[h.Label.Key] = h.Label.Value
		default:
			if c := conditionOf(p.Pod, h.Condition); c != nil && c.Status == "True" {
				return false
			}
			setCondition(p.Pod, h.Condition, "True", "HookDone", "", w.now)
		}
		return true
	}
	return false
}

// facts is the world's pod facts f as the fold keeps them, for the
// planner's functions that read them. It shares f's containers, so a
// container it finds is f's own.
func facts(f *journal.PodFacts) *projections.Facts {
	return projections.NewPod(&journal.Observed{Pod: f}).Pod
}
