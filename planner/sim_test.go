package planner

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestSimulation runs seeded simulations of a rollout over a random fleet
// with a random strategy, interleaving plans, actions carried out now or
// later, kubelet syncs, ticks, failed writes of every class, controller
// restarts, a lagging watch, new template revisions, pods deleted and
// recreated and pods made unready for outside reasons. After every step it
// checks the invariants below (see check); then it heals the world and
// checks that the rollout converges. Each seed runs twice and must journal
// the very same records: the planner and projections are deterministic.
//
// A failing seed is replayed alone with -run 'TestSimulation/seed=N';
// a longer soak: -sim.seeds=200 -sim.first=1000.
func TestSimulation(t *testing.T) {
	seeds, first := *simSeeds, *simFirst
	if testing.Short() {
		seeds = min(seeds, 4)
	}
	for seed := first; seed < first+uint64(seeds); seed++ {
		faults := seed%3 != 0 // every third seed runs without injected failures
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			h1 := runSim(t, seed, faults)
			if t.Failed() {
				return
			}
			if h2 := runSim(t, seed, faults); h1 != h2 {
				t.Fatalf("seed %d journaled different records on a second run: the planner or projections are not deterministic", seed)
			}
		})
	}
}

var (
	simSeeds = flag.Int("sim.seeds", 12, "number of TestSimulation seeds")
	simFirst = flag.Uint64("sim.first", 0, "first TestSimulation seed")
)

type sim struct {
	t      *testing.T
	w      *world
	rng    *rand.Rand
	faults bool
	f      *fleet
	spec   projections.RolloutSpec
	name   string

	// inflight holds actions intended and not yet carried out.
	inflight []Action
	// injected counts injected failures per action key (conflicts are
	// capped below the planner's give-up threshold).
	injected  map[string]int
	refused   bool // a failure the planner never retries was injected
	diverge   bool // no pod can take the target, and no replacement either
	restarts  int
	templates int
	imageN    int
	pending   map[string]bool // pods deleted and not yet recreated
	// carried counts pods under way when the target last changed: they
	// are re-planned toward the new target at once, whatever its steps.
	// The target changes for the planner when its watch delivers the new
	// revision, which a lagging watch does later than the template is
	// written: planned is the target the planner last planned toward.
	carried int
	planned string
	steps   int
	// trace is what happened lately, printed when an invariant fails.
	trace []string
	// stats, logged to show what a seed exercised.
	actions  map[ActionKind]int
	failures map[string]int
	peak     int // most pods unavailable because of Rollbook at once
}

func (s *sim) logf(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf("%4d +%-6s ", s.steps, time.Duration(s.w.now-epoch))+fmt.Sprintf(format, args...))
	if len(s.trace) > 60 {
		s.trace = s.trace[1:]
	}
}

func runSim(t *testing.T, seed uint64, faults bool) [32]byte {
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), faults: faults,
		injected: map[string]int{}, pending: map[string]bool{}, name: "r1",
		actions: map[ActionKind]int{}, failures: map[string]int{}}
	s.w = newWorld(t)
	s.w.freshEvery = 97 // folding afresh at every plan is quadratic
	s.setup()
	for s.steps = 0; s.steps < 1500; s.steps++ {
		s.step()
		s.check()
		if t.Failed() {
			t.Logf("seed %d failed at step %d; lately:\n%s", seed, s.steps, strings.Join(s.trace, "\n"))
			return [32]byte{}
		}
	}
	s.heal()
	s.converge()
	st, _ := s.w.rolloutStatus(s.name)
	maxU, maxUpdated := s.budgets()
	measured := 0
	for _, run := range s.w.state.Analyses {
		for _, c := range run.Checks {
			measured += int(c.Measurements)
		}
	}
	t.Logf("seed %d: %d pods (gate %v, skipDrain %v, hooks %v), maxUnavailable %d (peak %d), maxUpdated %d, steps %d, %d templates, %d restarts; actions %v; failures %v; %d measurements; %d records; phase %s",
		seed, s.replicas(), declaresGate(facts(s.w.pods[testNS+"/web-0"].Pod)), len(s.spec.Containers) > 0, s.spec.Lifecycle != nil, maxU, s.peak, maxUpdated, len(s.spec.Strategy.Steps), s.templates+1, s.restarts, s.actions, s.failures, measured, len(s.w.records), st.Phase)
	// Every plan above was also made by the incremental planner and
	// compared (world.plan): that says something only if most of them
	// were partial.
	t.Logf("seed %d: incremental planner: %d full plans, %d partial; %d rollouts planned again, %d of them from their last plan", seed, s.w.inc.Full, s.w.inc.Partial, s.w.inc.Replanned, s.w.inc.FromLast)
	if s.w.inc.Partial < 2*s.w.inc.Full {
		t.Errorf("seed %d: only %d of %d plans were partial", seed, s.w.inc.Partial, s.w.inc.Full+s.w.inc.Partial)
	}
	h := sha256.New()
	for _, r := range s.w.records {
		fmt.Fprintf(h, "%d %d %s %s %x\n", r.Seq, r.Time.UnixNano(), r.Kind, r.Key, r.Body)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (s *sim) intn(n int) int { return s.rng.IntN(n) }

func (s *sim) chance(p float64) bool { return s.rng.Float64() < p }

func (s *sim) setup() {
	w := s.w
	replicas := 20 + s.intn(41)
	nodes := w.addNodes(3+s.intn(4), 3)
	spread := []string{"round", "block"}[s.intn(2)]
	// Some fleets do not declare the readiness gate: their pods are
	// patched without a drain, and count as unavailable until verified.
	gate := s.intn(4) != 0
	app, log := containerSpec{name: "app", image: "app:v1"}, containerSpec{name: "log", image: "log:v1"}
	// One seed in four runs the world where recreating cannot help: the
	// rollout overrides resources so that no pod can take them in place
	// (its QoS class would change) and every replacement, made from the
	// template, differs the same way.
	s.diverge = s.intn(4) == 0
	if s.diverge {
		app.requests = map[string]string{"cpu": "100m", "memory": "64Mi"}
		app.limits = map[string]string{"cpu": "200m", "memory": "64Mi"}
		log.requests = map[string]string{"cpu": "50m", "memory": "32Mi"}
		log.limits = map[string]string{"cpu": "50m", "memory": "32Mi"}
	}
	// Admission's sidecar (no limits) keeps every pod Burstable, so the
	// diverging world has none.
	s.f = w.addFleet("web", replicas, nodes, spread, "OnDelete", gate, false, !s.diverge,
		[]containerSpec{app, log}, map[string]string{"app": "web"}, nil)
	s.newTemplate()

	st := projections.Strategy{Scatter: []projections.ScatterTerm{{Key: zoneLabel}}}
	if s.chance(0.5) {
		v := intstr.FromInt32(int32(1 + s.intn(5)))
		st.MaxUnavailable = &v
	} else {
		v := intstr.FromString(fmt.Sprintf("%d%%", 5+s.intn(30)))
		st.MaxUnavailable = &v
	}
	switch s.intn(3) {
	case 1:
		v := intstr.FromInt32(int32(s.intn(replicas / 3)))
		st.Partition = &v
	case 2:
		v := intstr.FromString(fmt.Sprintf("%d%%", s.intn(40)))
		st.Partition = &v
	}
	grace := int32(s.intn(3) * 5)
	st.GracePeriodSeconds = &grace
	timeout := int32(3600) // long: no pod is slow enough to fail
	st.VerifyTimeoutSeconds = &timeout
	if s.chance(0.5) {
		p := int32(30)
		st.Steps = []projections.Step{{Percent: 20, PauseSeconds: &p}, {Percent: 50, Pause: &projections.Pause{}}, {Percent: 100}}
		if s.chance(0.8) {
			st.Steps[0].Analysis = s.analysis()
		}
	}
	s.spec = projections.RolloutSpec{
		Target:   projections.Target{WorkloadRef: &projections.WorkloadRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web"}},
		Strategy: st,
	}
	if s.chance(0.5) {
		// The log sidecar restarts without a drain: a revision that changes
		// only it patches pods without gating them.
		s.spec.Containers = []projections.ContainerTarget{{Name: "log", SkipDrain: true}}
	}
	if s.diverge {
		s.spec.Containers = append(s.spec.Containers, projections.ContainerTarget{Name: "app",
			Resources: &projections.Resources{Requests: map[string]string{"cpu": "200m"}}})
	}
	if s.chance(0.4) {
		s.spec.Lifecycle = s.lifecycle()
	}
	s.writeSpec()
}

// analysis is a check with random limits whose measurements mostly pass,
// sometimes fail or give no value: the analysis may pass, or fail and
// pause the rollout until heal approves the step.
func (s *sim) analysis() *projections.Analysis {
	interval, passes, failures := int32(5+s.intn(30)), int32(1+s.intn(3)), int32(s.intn(3))
	var verdicts []string
	for range 30 {
		switch s.intn(10) {
		case 0:
			verdicts = append(verdicts, "Fail:0.2")
		case 1:
			verdicts = append(verdicts, "Error:timeout")
		default:
			verdicts = append(verdicts, "Pass:0.01")
		}
	}
	s.w.measures = map[string][]string{"errors": verdicts}
	return &projections.Analysis{Checks: []projections.AnalysisCheck{{
		Name: "errors", Prometheus: &projections.PrometheusCheck{Address: "http://prometheus:9090", Query: "errors"},
		SuccessCondition: "result < 0.05", IntervalSeconds: &interval, Passes: &passes, FailureLimit: &failures,
	}}}
}

// lifecycle is a random set of hooks: pre-update, post-update or both,
// released by a label or a condition, short timeouts that pause the
// rollout or let the pod go on. The hook controller answers at random
// kubelet syncs (see step).
func (s *sim) lifecycle() *projections.Lifecycle {
	hook := func(name string) *projections.LifecycleHook {
		timeout := int32(30 + s.intn(120))
		h := &projections.LifecycleHook{TimeoutSeconds: &timeout, OnTimeout: []string{"Pause", "Proceed"}[s.intn(2)]}
		if s.chance(0.5) {
			h.Label = &projections.HookLabel{Key: "example.com/" + name, Value: "true"}
		} else {
			h.Condition = "example.com/" + name
		}
		return h
	}
	l := &projections.Lifecycle{}
	switch s.intn(3) {
	case 0:
		l.PreUpdate = hook("drained")
	case 1:
		l.PostUpdate = hook("rejoined")
	default:
		l.PreUpdate, l.PostUpdate = hook("drained"), hook("rejoined")
	}
	return l
}

func (s *sim) writeSpec() {
	b, err := json.Marshal(s.spec)
	if err != nil {
		s.t.Fatal(err)
	}
	s.w.addRollout(s.name, b)
}

// newTemplate gives the fleet a new update revision: new images for one
// or both containers (sometimes a retag with the same digest).
func (s *sim) newTemplate() {
	s.imageN++
	cs := s.f.template()
	tag := fmt.Sprintf("v%d", s.imageN+1)
	if s.chance(0.2) {
		tag += "-samedigest"
	}
	switch s.intn(3) {
	case 0:
		cs[0].image = "app:" + tag
	case 1:
		cs[1].image = "log:" + tag
	default:
		cs[0].image, cs[1].image = "app:"+tag, "log:"+tag
	}
	if s.chance(0.25) {
		// A change no in-place update can make: pods are recreated.
		cs[0].env = fmt.Sprintf("e%d", s.imageN)
	}
	s.w.setTemplate(s.f, cs, "", s.f.tmpl.Labels, s.f.tmpl.Annotations)
	s.w.write(s.f.obs)
}

// replicas is the fleet's nominal size: the budgets are checked against it.
func (s *sim) replicas() int { return s.f.replicas }

// step does one random thing.
func (s *sim) step() {
	w := s.w
	switch r := s.intn(100); {
	case r < 30: // the controller plans and carries out, now or later
		s.planAndAct()
	case r < 42: // actions in flight complete
		for len(s.inflight) > 0 && s.chance(0.7) {
			i := s.intn(len(s.inflight))
			a := s.inflight[i]
			s.inflight = slices.Delete(s.inflight, i, i+1)
			s.complete(a)
		}
	case r < 60: // some kubelets sync
		var some []string
		for _, k := range keysSorted(w.pods) {
			if s.chance(0.6) {
				some = append(some, w.pods[k].Name)
			}
		}
		if len(some) > 0 {
			// The hook controller, if any, answers at some of these syncs.
			w.hookCtl = s.spec.Lifecycle != nil && s.chance(0.3)
			s.logf("kubelet %v (hooks %v)", w.kubelet(some...), w.hookCtl)
			w.hookCtl = false
		}
	case r < 72: // time passes
		res := Plan(w.state)
		if res.WakeAt > w.now && s.chance(0.5) {
			w.tick(time.Duration(res.WakeAt - w.now))
		} else {
			w.tick(time.Duration(1+s.intn(10)) * time.Second)
		}
	case r < 80: // the watch delivers
		s.logf("flush %d", len(w.queue))
		w.flush()
	case r < 83: // the watch starts or stops lagging
		w.lagWatch = !w.lagWatch
		s.logf("lag %v", w.lagWatch)
		if !w.lagWatch {
			w.flush()
		}
	case r < 85 && s.faults && s.restarts < 3: // the controller restarts
		s.restart()
	case r < 87 && s.templates < 2 && s.steps > 100: // a new revision mid-rollout
		s.templates++
		s.newTemplate()
		s.logf("template %s", s.f.obs.Workload.UpdateRevision)
	case r < 88 && s.faults && s.chance(0.2): // a pod is deleted from outside; its workload recreates it, maybe later
		keys := keysSorted(w.pods)
		k := keys[s.intn(len(keys))]
		// Half the time, a pod with a write in flight: the write then
		// fails as gone (or conflicts with the replacement).
		if len(s.inflight) > 0 && s.chance(0.5) {
			if a := s.inflight[s.intn(len(s.inflight))]; a.Pod != "" && w.pods[a.Pod] != nil {
				k = a.Pod
			}
		}
		w.outside[k] = true
		s.logf("delete %s", k)
		w.deletePod(k, false)
		s.pending[k] = true
		if s.chance(0.5) {
			s.recreate()
		}
	case r < 92: // missing pods are recreated
		s.recreate()
	case r < 94 && s.faults: // a pod turns unready for its own reasons, or one recovers
		if sick := keysSorted(w.sick); len(sick) > 0 && (len(sick) >= 2 || s.chance(0.5)) {
			k := sick[s.intn(len(sick))]
			delete(w.sick, k)
			s.logf("cured %s", k)
			break
		}
		keys := keysSorted(w.pods)
		k := keys[s.intn(len(keys))]
		w.sick[k] = true
		w.outside[k] = true
		s.logf("sick %s", k)
	case r < 96: // someone approves the next step
		// Approvals count per revision (status.approvedStepsBase), so a
		// user approving again after a new revision is realistic.
		if len(s.spec.Strategy.Steps) > 0 && s.chance(0.3) {
			s.spec.ApprovedSteps++
			s.writeSpec()
		}
	default:
		w.tick(time.Second)
	}
}

func (s *sim) recreate() {
	for k := range s.pending {
		delete(s.pending, k)
	}
	s.w.syncFleets()
}

// inflightFor returns the in-flight action on an object, if any.
func (s *sim) inflightFor(obj string) *Action {
	for i := range s.inflight {
		if objectOf(s.inflight[i]) == obj {
			return &s.inflight[i]
		}
	}
	return nil
}

// objectOf names the object an action writes: a pod by key and UID (a
// replacement pod under the same name is another object).
func objectOf(a Action) string {
	if a.Pod != "" {
		return a.Pod + "@" + a.UID
	}
	if a.Kind == Event {
		return "event:" + a.Key()
	}
	if a.Kind == Measure {
		return projections.MeasurePendingKey(a.Key()) // one measurement of a check at a time
	}
	return "rollout:" + a.Rollout
}

// planAndAct plans, journals every intent, then carries each action out
// now or leaves it in flight; and checks that planning again with the
// intents in flight plans nothing for the objects they touch.
func (s *sim) planAndAct() {
	w := s.w
	if rev, problem := s.rolloutTarget(); problem == "" && rev != s.planned {
		if s.planned != "" {
			s.carried = s.underWay()
		}
		s.planned = rev
	}
	res := w.plan()
	if len(res.Actions) == 0 {
		return
	}
	s.checkStarts(res)
	seen := map[string]bool{}
	for _, a := range res.Actions {
		obj := objectOf(a)
		if seen[obj] {
			s.t.Errorf("one plan holds two actions on %s", obj)
		}
		seen[obj] = true
		if other := s.inflightFor(obj); other != nil {
			s.t.Errorf("planned %s while %s is in flight on the same object", a, other)
		}
		w.intend(a)
		s.actions[a.Kind]++
		s.logf("intend %s", a)
		s.inflight = append(s.inflight, a)
	}
	// Planning again with every intent in flight: nothing on those objects.
	again := Plan(w.state)
	for _, a := range again.Actions {
		if seen[objectOf(a)] {
			s.t.Errorf("planning again with the intents in flight repeats work on %s: %s", objectOf(a), a)
		}
	}
	var keep []Action
	for _, a := range s.inflight {
		if seen[objectOf(a)] && s.chance(0.8) {
			s.complete(a)
			continue
		}
		keep = append(keep, a)
	}
	s.inflight = keep
}

// complete carries out an intended action, or fails it.
func (s *sim) complete(a Action) {
	w := s.w
	class := ""
	// A measurement never fails as a write does (no value is a verdict,
	// see actuator.measure): only a restart abandons one.
	if s.faults && a.Kind != Measure && s.chance(0.08) {
		switch s.intn(10) {
		case 0, 1, 2, 3:
			if s.injected[a.Key()] < 2 {
				class = journal.ClassConflict
			}
		case 4, 5, 6, 7, 8:
			class = journal.ClassThrottled
		case 9:
			if s.chance(0.3) {
				class = journal.ClassInvalid
			}
		}
	}
	if class != "" {
		s.injected[a.Key()]++
		s.failures[class]++
		s.logf("inject %s: %s", class, a)
		if class == journal.ClassInvalid && a.Kind != Event && a.Kind != Status {
			s.refused = true
		}
		w.fail(a, class)
		return
	}
	if a.Kind == Patch {
		s.checkPreUpdate(a)
	}
	rv, class := w.perform(a)
	if class != "" {
		s.failures[class]++
		s.logf("failed %s: %s", class, a)
		w.fail(a, class)
		return
	}
	s.logf("done %s", a)
	w.succeed(a, rv)
	if !w.lagWatch {
		w.flush()
		w.syncFleets()
	}
}

// restart drops every intent in flight, as a controller that died would:
// some writes landed, some did not, and the new process journals each as
// abandoned. NB: the new process's watch resumes from the journaled
// resourceVersion before it plans (flush), so writes that landed are seen;
// planning before the watch catches up would not see them (see the report).
func (s *sim) restart() {
	s.restarts++
	for _, a := range s.inflight {
		if s.chance(0.5) {
			if _, class := s.w.perform(a); class != "" {
				_ = class // it did not land
			}
		}
	}
	s.w.flush()
	for _, a := range s.inflight {
		f := s.w.fact(a)
		f.Class, f.Error = journal.ClassAbandoned, "controller restarted"
		s.w.emit(journal.KindActionFailed, a.Key(), f)
	}
	s.inflight = nil
	s.w.syncFleets()
}

// checkPreUpdate: with a pre-update hook, a pod is patched only once it
// is marked and released, or its wait timed out with onTimeout Proceed.
func (s *sim) checkPreUpdate(a Action) {
	h := preHook(s.spec)
	p := s.w.pods[a.Pod]
	if h == nil || p == nil || p.UID != a.UID {
		return
	}
	pod := projections.NewPod(p)
	c := gateCondition(facts(p.Pod))
	switch {
	case p.Labels[HookLabel] != HookPreUpdate:
		s.t.Errorf("step %d: %s patched without the pre-update marker: %s", s.steps, p.Name, a)
	case released(pod, h):
	case c != nil && proceeds(h) && s.w.now >= c.LastTransition+hookTimeout(h):
	default:
		s.t.Errorf("step %d: %s patched before its pre-update hook released it: %s", s.steps, p.Name, a)
	}
}

// budgets returns maxUnavailable and the most pods that may be updated.
func (s *sim) budgets() (maxUnavailable, maxUpdated int) {
	n := s.replicas()
	mu, err := scaled(s.spec.Strategy.MaxUnavailable, n, 1, false)
	if err != nil {
		s.t.Fatal(err)
	}
	part, err := scaled(s.spec.Strategy.Partition, n, 0, true)
	if err != nil {
		s.t.Fatal(err)
	}
	return max(mu, 1), max(n-part, 0)
}

// unavailable lists the pods that are, or are about to be, out of
// service because of Rollbook: not Ready (gated, restarting, starting), or
// a container the kubelet is about to restart, or a gate, patch or recreate
// in flight; minus the pods unavailable for outside reasons (deleted or
// sick, until their containers are ready again).
func (s *sim) unavailable() []string {
	var out []string
	for i := range s.replicas() {
		k := fmt.Sprintf("%s/web-%d", testNS, i)
		if s.w.outside[k] {
			continue
		}
		p := s.w.pods[k]
		why := ""
		switch {
		case p == nil:
			why = "deleted"
		case !podReady(facts(p.Pod)):
			why = "not ready"
		case gated(p.Pod):
			why = "gated" // not Ready from the kubelet's next sync
		case kubeletWillRestart(p.Pod):
			why = "restart pending"
		default:
			if a := s.inflightFor(k + "@" + p.UID); a != nil && (a.Kind == Gate || a.Kind == Patch || a.Kind == Recreate) {
				why = string(a.Kind) + " in flight"
			}
		}
		if why != "" {
			out = append(out, "web-"+fmt.Sprint(i)+" ("+why+")")
		}
	}
	return out
}

func kubeletWillRestart(f *journal.PodFacts) bool {
	for _, c := range f.Containers {
		if c.Image != c.StatusImage {
			return true
		}
	}
	return false
}

// checkStarts: a plan disrupts no more ready pods than the budget left.
// A start is a gate, a recreate, or a patch of a pod not gated (nothing
// to drain); starting a pod that is not ready costs nothing, and neither
// does recreating one already disrupted (gated, or its restart pending:
// unavailable already, and counted so).
func (s *sim) checkStarts(res Result) {
	maxU, _ := s.budgets()
	before := len(s.unavailable())
	n := 0
	for _, a := range res.Actions {
		p := s.w.pods[a.Pod]
		if p == nil || !podReady(facts(p.Pod)) || gated(p.Pod) || kubeletWillRestart(p.Pod) {
			continue
		}
		if a.Kind == Gate || a.Kind == Recreate || a.Kind == Patch && !gated(p.Pod) {
			n++
		}
	}
	if n > 0 && before+n > maxU {
		s.t.Errorf("the plan disrupts %d ready pods with %d unavailable already; maxUnavailable is %d", n, before, maxU)
	}
}

func gated(f *journal.PodFacts) bool {
	c := gateCondition(facts(f))
	return c != nil && c.Status() == "False"
}

// check runs after every step. Invariants:
//
//  1. Availability: at most maxUnavailable of the fleet's pods are
//     unavailable because of Rollbook (see unavailable) — pods unavailable
//     for outside reasons are left out, as the planner starts no ready pod
//     while they fill the budget.
//  2. No pod (UID) is patched twice toward the same revision.
//  3. Partition: the pods Rollbook updated to the current target (patched
//     for it, or recreated for it) never exceed replicas - partition.
//  4. No object has two actions in flight (checked as intents are made).
//  5. No pod is recreated twice for a revision; where no replacement can
//     take the target, a revision costs at most maxUnavailable recreates.
//  6. What admission added to the pods (a sidecar, a label, an
//     annotation) is never touched.
//  7. No pod beyond the first step starts before that step's analysis
//     passed or the step was approved (pods under way when the target
//     changed excepted: they are re-planned at once).
func (s *sim) check() {
	maxU, maxUpdated := s.budgets()
	u := s.unavailable()
	s.peak = max(s.peak, len(u))
	if len(u) > maxU {
		s.t.Errorf("step %d: %d pods unavailable because of Rollbook, maxUnavailable is %d: %s", s.steps, len(u), maxU, strings.Join(u, ", "))
	}
	for k, n := range s.w.patches {
		if n > 1 {
			s.t.Errorf("step %d: pod %s patched %d times for the same revision", s.steps, k, n)
		}
	}
	// 6. What admission added, no template named: never touched.
	if s.f.admission {
		for _, p := range s.w.pods {
			c, _ := findContainer(facts(p.Pod), "mesh-proxy", false)
			if c == nil || c.Image != "mesh-proxy:1.0" || p.Labels[zoneLabel] == "" || !slices.Contains(p.AnnotationKeys, "mesh.example/injected") {
				s.t.Errorf("step %d: %s lost what admission added (sidecar %v, zone label %q, annotations %v)", s.steps, p.Name, c, p.Labels[zoneLabel], p.AnnotationKeys)
			}
		}
	}
	// 5. No pod is recreated twice for the same revision; where no
	// replacement can take the target either, a revision costs at most
	// maxUnavailable recreates before the rollout stops.
	perRev := map[string]int{}
	for k, n := range s.w.recreates {
		if n > 1 {
			s.t.Errorf("step %d: pod %s recreated %d times for the same revision", s.steps, k, n)
		}
		perRev[k[strings.LastIndex(k, "/")+1:]] += n
	}
	if s.diverge {
		for rev, n := range perRev {
			if n > maxU {
				s.t.Errorf("step %d: %d pods recreated for revision %s where no replacement can take it; maxUnavailable is %d", s.steps, n, rev, maxU)
			}
		}
	}
	rev := s.targetRevision()
	updated := 0
	for _, p := range s.w.pods {
		st := readState(projections.NewPod(p))
		if st != nil && st.Revision() == rev || s.w.recreated[p.UID] == rev {
			updated++
		}
	}
	if updated > maxUpdated {
		s.t.Errorf("step %d: %d pods updated to %s, partition allows %d", s.steps, updated, rev, maxUpdated)
	}
	s.checkAnalysis(rev, updated, maxUpdated)
}

// checkAnalysis: no pod beyond the first step starts before that step's
// analysis has passed or the step was approved.
func (s *sim) checkAnalysis(rev string, updated, maxUpdated int) {
	steps := s.spec.Strategy.Steps
	r := s.w.state.Rollouts[testNS+"/"+s.name]
	if len(steps) == 0 || steps[0].Analysis == nil || r == nil || s.spec.ApprovedSteps-r.Status.ApprovedStepsBase > 0 {
		return
	}
	if run := s.w.state.Analyses[projections.AnalysisKey(r.Key(), rev, 0)]; run != nil && run.Checks["errors"] != nil &&
		checkStatus(steps[0].Analysis.Checks[0], *run.Checks["errors"]).Phase == projections.AnalysisPassed {
		return
	}
	if first := min(ceilPercent(steps[0].Percent, s.replicas()), maxUpdated); updated > first+s.carried {
		s.t.Errorf("step %d: %d pods updated to %s before the first step's analysis passed; the step holds %d (and %d were under way)", s.steps, updated, rev, first, s.carried)
	}
}

// underWay counts pods gated, with an intent in flight, or patched and
// not yet restarted by the kubelet.
func (s *sim) underWay() int {
	n := 0
	for _, p := range s.w.pods {
		busy := gated(p.Pod) || s.inflightFor(p.Namespace+"/"+p.Name+"@"+p.UID) != nil
		for _, c := range p.Pod.Containers {
			busy = busy || c.Image != c.StatusImage
		}
		if busy {
			n++
		}
	}
	return n
}

// targetRevision is the rollout's target as the planner computes it from
// the journal.
func (s *sim) targetRevision() string {
	rev, problem := s.rolloutTarget()
	if problem != "" {
		s.t.Fatalf("rollout target: %s", problem)
	}
	return rev
}

// rolloutTarget is the revision the rollout targets in the planner's
// state ("" before the rollout is seen), or what stops it resolving.
func (s *sim) rolloutTarget() (rev, problem string) {
	r := s.w.state.Rollouts[testNS+"/"+s.name]
	if r == nil {
		return "", ""
	}
	t, problem, _ := resolveTarget(s.w.state, r)
	return t.rev, problem
}

// heal ends every fault: actions in flight complete, the watch catches up,
// sick pods recover, missing pods are recreated, every step is approved.
func (s *sim) heal() {
	s.faults = false
	s.w.hookCtl = true
	for _, a := range s.inflight {
		s.complete(a)
	}
	s.inflight = nil
	s.w.lagWatch = false
	s.w.flush()
	clear(s.w.sick)
	s.recreate()
	// Approve every step of whatever revision is current: approvals are
	// counted from status.approvedStepsBase.
	if len(s.spec.Strategy.Steps) > 0 {
		s.spec.ApprovedSteps += int32(len(s.spec.Strategy.Steps))
		s.writeSpec()
	}
}

// converge runs the controller loop until the rollout settles, and checks
// it succeeded: every pod it had to update is verified and ungated, and
// every pod is ready.
func (s *sim) converge() {
	w := s.w
	for i := 0; ; i++ {
		if i == 3000 {
			s.t.Fatalf("no convergence after %d rounds\n%s\n%s", i, w.statusText(s.name), w.podsTable(false))
		}
		res := w.plan()
		for _, a := range res.Actions {
			w.do(a, "")
		}
		s.check()
		if len(res.Actions) > 0 {
			continue
		}
		if len(w.kubelet()) > 0 {
			continue
		}
		if res.WakeAt == 0 {
			break
		}
		w.tick(time.Duration(res.WakeAt - w.now))
	}
	st, _ := w.rolloutStatus(s.name)
	if s.diverge {
		// Stopped, saying which pod and why, with no pod left gated.
		if st.Phase != projections.PhaseFailed || !hasConditionReason(st, "NotInPlace", "RecreatedPodDiffers") {
			s.t.Fatalf("a rollout no pod can take did not stop with RecreatedPodDiffers\n%s\n%s", w.statusText(s.name), w.podsTable(false))
		}
		for _, k := range keysSorted(w.pods) {
			if p := w.pods[k]; gated(p.Pod) || !podReady(facts(p.Pod)) {
				s.t.Errorf("%s is gated or not ready after the rollout stopped", p.Name)
			}
		}
		return
	}
	if s.refused {
		// A write the planner does not retry was failed on purpose: the
		// rollout may be stuck, but then it must say so.
		if st.Phase != projections.PhaseSucceeded && !hasCondition(st, "Stalled") {
			var fails []string
			for _, k := range keysSorted(w.state.Failures) {
				f := w.state.Failures[k]
				fails = append(fails, fmt.Sprintf("%s: %d %s", k, f.Count, f.Class))
			}
			s.t.Errorf("rollout is %s without a Stalled condition\n%s\n%s\nfailures:\n%s", st.Phase, w.statusText(s.name), w.podsTable(false), strings.Join(fails, "\n"))
		}
		return
	}
	if st.Phase != projections.PhaseSucceeded {
		s.t.Fatalf("rollout did not succeed\n%s\n%s", w.statusText(s.name), w.podsTable(false))
	}
	_, maxUpdated := s.budgets()
	template := s.f.tmpl.Containers
	atTarget := 0
	for _, k := range keysSorted(w.pods) {
		p := w.pods[k]
		if !podReady(facts(p.Pod)) {
			s.t.Errorf("%s is not ready after the rollout", p.Name)
		}
		if c := gateCondition(facts(p.Pod)); c != nil && c.Status() != "True" || c == nil && declaresGate(facts(p.Pod)) {
			s.t.Errorf("%s is still gated after the rollout", p.Name)
		}
		same := true
		for _, tc := range template {
			c, _ := findContainer(facts(p.Pod), tc.Name, false)
			same = same && c != nil && c.Image == tc.Image && c.StatusImage == c.Image
		}
		if same {
			atTarget++
		}
	}
	if atTarget < maxUpdated {
		s.t.Errorf("%d pods run the target, want at least %d (replicas - partition)", atTarget, maxUpdated)
	}
}

func hasConditionReason(st projections.RolloutStatus, typ, reason string) bool {
	for _, c := range st.Conditions {
		if c.Type == typ && c.Status == "True" && c.Reason == reason {
			return true
		}
	}
	return false
}

func hasCondition(st projections.RolloutStatus, typ string) bool {
	for _, c := range st.Conditions {
		if c.Type == typ && c.Status == "True" {
			return true
		}
	}
	return false
}
