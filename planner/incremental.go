package planner

import (
	"slices"
	"sort"
	"strings"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"rollbook.dev/rollbook/projections"
)

// Incremental plans exactly as Plan does, at a cost proportional to what
// changed since its last plan rather than to the fleet (P3). It keeps each
// rollout's last plan (a unit: its actions, wake-up time, the pods it
// selected and claimed) and each pod's initial and release ungates, and
// replans only the units the touched objects (projections.Touched) reach:
//
//   - a rollout touched by its own records (spec, status, its actions'
//     outcomes, measurements, events);
//   - a rollout whose selection held, or now matches, a touched pod;
//   - a workload rollout whose workload changed, or any workload rollout
//     of a namespace whose ControllerRevisions changed;
//   - a rollout whose wake-up time has come (time reaches a plan only
//     through the wake-ups it asks for);
//   - a rollout whose last plan had actions (they carry the journal
//     sequence and the time they were planned at, and are normally
//     touched by their own intents anyway);
//   - a younger rollout that selects a pod whose claimant changed.
//
// Everything else is reused as it was. A node change, a first plan, and a
// plan every FullEvery of journal time plan everything, the last as a
// safety net that bounds how long a dependency missed here could go
// unseen. Tests hold it to Plan at every plan of the golden scripts, the
// simulation and the recorded journals.
//
// Incremental is not safe for concurrent use; it is pure like Plan (its
// result is a function of the states and touched sets it was given).
type Incremental struct {
	units map[string]*unit
	// claims maps each pod to the rollout that claimed it: the rollouts
	// this plan processed so far with their new claims, the others with
	// those of the last plan (claimOf counts only the former). Kept across
	// plans, so reusing a rollout's plan costs nothing per pod.
	claims  map[string]claimant
	initial map[string]Action // pod key → its initial ungate
	release map[string]Action // pod key → its release
	fullAt  int64
	// Full and Partial count plans of each kind, for metrics; Replanned
	// the rollouts planned again (not reused), and FromLast those of them
	// planned from their last plan and the pods that changed since
	// (delta.go).
	Full, Partial, Replanned, FromLast int
	// groups numbers the nodes' scatter groups, from one full plan to
	// the next (see scatterGroups).
	groups scatterGroups
	// bases keeps the targets' bases (target.base) from plan to plan,
	// until the next full plan.
	bases map[baseKey]*podTarget
	// actions is how many actions the last plan had: the next one, most
	// often the same but a few, is made that big at once, not grown to
	// it by doubling (under a rollout of 100,000 pods, 10,000 actions
	// of 320 bytes: the plans' garbage, which sets the steady peak).
	actions int
}

// FullEvery is how much journal time may pass between two full plans.
const FullEvery = int64(300e9)

// unit is one rollout's last plan.
type unit struct {
	ns      string
	actions []Action
	wake    int64
	// pods are the pods it selected, as selected, sorted by key (find).
	pods []*projections.Pod
	// claims are the keys of the pods it claims, sorted (read them
	// through claimed): none kept when claimsSelected, when they are the
	// keys of its pods (a plan made from the last one claims every pod
	// it selects), which would be another 16 bytes for every such pod.
	claims         []string
	claimsSelected bool
	// What selects its pods, to tell whether a touched pod joins it: the
	// owner workload's UID, or the label selector; neither while its
	// target does not resolve.
	ownerUID string
	selector labels.Selector
	selKey   string
	// workload is the spec's "Kind/namespace/name", "" for selectors.
	workload string
	// volatile: its plan depends on the time it was planned at in a way
	// no wake-up covers; it is planned again every time.
	volatile bool
	// kept: its pods' classifications, for its next plan.
	kept *keptPlans
	// plans and counts: each of pods' classification and counts, when
	// simple: its next plan may start from this one (delta.go).
	plans  []*podPlan
	counts []podCount
	simple bool
	// claimsDelta: set by a plan made from the last one, the claims it
	// changed; replan then does not compare them all.
	claimsDelta *claimsDelta
}

func (u *unit) matches(pod *projections.Pod) bool {
	switch {
	case pod.Namespace != u.ns:
		return false
	case u.ownerUID != "":
		return pod.Owner != nil && pod.Owner.UID == u.ownerUID
	case u.selector != nil:
		return u.selector.Matches(pod.LabelSet())
	}
	return false
}

// NewIncremental returns a planner whose first plan is a full one.
func NewIncremental() *Incremental { return &Incremental{} }

// Plan derives the actions for s at s.Now, as Plan(s) would. touched is
// what the records folded since the previous call changed
// (State.TakeTouched); nil plans everything.
func (in *Incremental) Plan(s *projections.State, touched *projections.Touched) Result {
	full := in.units == nil || touched == nil || touched.All || s.Now >= in.fullAt+FullEvery
	changed := map[string]bool{} // pods whose claimant changed
	p := &planning{s: s, now: s.Now, processed: map[string]bool{}, busy: make(map[string]bool, in.actions), inc: in, changed: changed}
	if in.actions > 0 {
		p.res.Actions = make([]Action, 0, in.actions+in.actions/8)
	}
	var dirty map[string]bool
	if full {
		in.Full++
		in.units, in.initial, in.release = map[string]*unit{}, map[string]Action{}, map[string]Action{}
		in.claims = map[string]claimant{}
		in.groups, in.bases = nil, nil
		in.fullAt = s.Now
		p.keys = sortedPodKeys(s)
		for _, k := range p.keys {
			in.initialFor(s, k)
		}
	} else {
		in.Partial++
		p.touched = touched
		for k := range touched.Pods {
			in.initialFor(s, k)
		}
		for rk, u := range in.units {
			if s.Rollouts[rk] == nil {
				// Deleted: its pods are free for younger rollouts.
				for _, k := range u.claimed() {
					changed[k] = true
				}
				in.dropClaims(rk, u)
				delete(in.units, rk)
			}
		}
		dirty = in.dirty(s, touched, changed)
	}
	for _, k := range keysSorted(in.initial) {
		p.add(in.initial[k])
	}
	for _, r := range rolloutsByAge(s) {
		rk := r.Key()
		if u := in.units[rk]; u != nil && !full && !dirty[rk] {
			p.processed[rk] = true
			for _, a := range u.actions {
				p.add(a)
			}
			p.wake(u.wake)
			continue
		}
		in.replan(p, r, changed, dirty)
	}
	if full {
		for _, k := range p.keys {
			in.releaseFor(p, k)
		}
	} else {
		for k := range touched.Pods {
			in.releaseFor(p, k)
		}
		for k := range changed {
			in.releaseFor(p, k)
		}
		for _, k := range keysSorted(in.release) {
			in.releaseFor(p, k) // a release not yet carried out is derived again
		}
	}
	for _, k := range keysSorted(in.release) {
		p.add(in.release[k])
	}
	if in.actions = len(p.res.Actions); in.actions == 0 {
		p.res.Actions = nil // as a plan without the hint has none
	}
	return p.res
}

// scatterGroups is the groups numbered since the last full plan.
func (in *Incremental) scatterGroups() scatterGroups {
	if in.groups == nil {
		in.groups = scatterGroups{}
	}
	return in.groups
}

// keptBases is the targets' bases kept since the last full plan.
func (in *Incremental) keptBases() map[baseKey]*podTarget {
	if in.bases == nil {
		in.bases = map[baseKey]*podTarget{}
	}
	return in.bases
}

// dirty returns the units to replan (see Incremental).
func (in *Incremental) dirty(s *projections.State, t *projections.Touched, changed map[string]bool) map[string]bool {
	d := map[string]bool{}
	for rk := range t.Rollouts {
		d[rk] = true
	}
	for rk, u := range in.units {
		if u.volatile || len(u.actions) > 0 || (u.wake != 0 && u.wake <= s.Now) || (t.Namespaces[u.ns] && u.workload != "") || (u.workload != "" && t.Workloads[u.workload]) {
			d[rk] = true
		}
	}
	// A unit already dirty is not looked at again: while a rollout rolls
	// it is dirty from its first touched pod, and finding each of the
	// others among its pods was a fifth of a replay's planning.
	for k := range changed {
		in.selecting(k, d, nil)
	}
	for k := range t.Pods {
		in.selecting(k, d, s.Pods[k])
	}
	return d
}

// replan plans rollout r afresh and keeps its unit; pods whose claimant
// changed make the younger rollouts that select them dirty.
func (in *Incremental) replan(p *planning, r *projections.Rollout, changed, dirty map[string]bool) {
	rk := r.Key()
	old := in.units[rk]
	p.processed[rk] = true
	in.Replanned++
	start := len(p.res.Actions)
	p.unit = &unit{ns: r.Namespace, wake: 0}
	if ref := r.Spec.Target.WorkloadRef; ref != nil {
		p.unit.workload = ref.Kind + "/" + r.Namespace + "/" + ref.Name
	}
	p.rollout(r)
	u := p.unit
	p.unit = nil
	if projections.Terminal(r.Status.Phase) {
		u.rest()
	}
	u.actions = slices.Clone(p.res.Actions[start:])
	changedClaim := func(k string) {
		changed[k] = true
		if dirty != nil {
			in.selecting(k, dirty, nil)
		}
	}
	me := claimantOf(rk)
	if cd := u.claimsDelta; cd != nil {
		// Made from the last plan: its changes are the claims' changes.
		for _, k := range cd.left {
			if in.claims[k] == me {
				delete(in.claims, k)
			}
			changedClaim(k)
		}
		for _, k := range cd.joined {
			changedClaim(k)
		}
		u.claimsDelta = nil
		in.units[rk] = u
		return
	}
	// u.claims holds what this plan claimed (claim), some let go of
	// since (unclaim); the last plan's claims it did not make again are
	// dropped only now, so that the rollout's own plan never paid to
	// drop and make again the claims it keeps.
	claims := u.claims[:0]
	for _, k := range u.claims {
		if in.claims[k] == me {
			claims = append(claims, k)
		}
	}
	u.claims = claims
	if !slices.IsSorted(u.claims) {
		sort.Strings(u.claims)
	}
	var oldClaims []string
	if old != nil {
		oldClaims = old.claimed()
	}
	diffSorted(oldClaims, u.claims, func(k string) {
		if in.claims[k] == me {
			delete(in.claims, k) // let go of since the last plan
		}
		changedClaim(k)
	}, changedClaim)
	if slices.EqualFunc(u.claims, u.pods, func(k string, p *projections.Pod) bool { return k == p.Key() }) {
		u.claims, u.claimsSelected = nil, true // the most common case: see unit.claims
	}
	in.units[rk] = u
}

// selecting adds to d each rollout not in it yet whose last plan selected
// pod k, or that selects pod (k's pod now; nil: none): a unit's selected
// pods are sorted, and a rollout selects only pods of its namespace. (An
// index by pod cost every selected pod a map entry, ~30 bytes, and was
// kept in step with the units at every plan.)
func (in *Incremental) selecting(k string, d map[string]bool, pod *projections.Pod) {
	ns, _, _ := strings.Cut(k, "/")
	for rk, u := range in.units {
		if d[rk] || u.ns != ns {
			continue
		}
		if pod != nil && u.matches(pod) {
			d[rk] = true
		} else if _, ok := u.find(k); ok {
			d[rk] = true
		}
	}
}

// find is where pod k is among u's pods, or would go, and whether it is
// there.
func (u *unit) find(k string) (int, bool) {
	// Outside the range of its keys first: a workload's pods mostly share
	// a prefix (a StatefulSet's always), so this answers for the pods of
	// a namespace's other rollouts without a search.
	switch n := len(u.pods); {
	case n == 0 || k < u.pods[0].Key():
		return 0, false
	case k > u.pods[n-1].Key():
		return n, false
	}
	return slices.BinarySearchFunc(u.pods, k, func(p *projections.Pod, k string) int { return strings.Compare(p.Key(), k) })
}

// claimed is the keys of the pods u claims, sorted.
func (u *unit) claimed() []string {
	if !u.claimsSelected {
		return u.claims
	}
	return podKeys(u.pods)
}

// podKeys are the pods' keys, in their order.
func podKeys(pods []*projections.Pod) []string {
	keys := make([]string, len(pods))
	for i, p := range pods {
		keys[i] = p.Key()
	}
	return keys
}

// claimOf returns the rollout that claimed pod k so far in this plan; for
// the rollout being planned, that may be itself (its last plan's claim).
func (p *planning) claimOf(k string) (string, bool) {
	c, ok := p.inc.claims[k]
	if !ok || !p.processed[c.Value()] {
		return "", false
	}
	return c.Value(), true
}

// claimant is the rollout a pod is claimed by: a handle to its key, one
// word where the key is two (the claims hold an entry for every pod a
// rollout selects: ~10 bytes a pod less).
type claimant = unique.Handle[string]

func claimantOf(rk string) claimant { return unique.Make(rk) }

// claim gives pod k to rollout rk, the one being planned (which may hold
// it from its last plan: see replan).
func (p *planning) claim(k, rk string) {
	if c := claimantOf(rk); p.inc.claims[k] != c {
		p.inc.claims[k] = c
	}
	if p.unit != nil {
		p.unit.claims = append(p.unit.claims, k)
	}
}

// unclaim lets go of pod k (the rollout being planned cannot plan).
func (p *planning) unclaim(k string) { delete(p.inc.claims, k) }

// dropClaims removes a unit's claims that are still its own.
func (in *Incremental) dropClaims(rk string, u *unit) {
	me := claimantOf(rk)
	for _, k := range u.claimed() {
		if in.claims[k] == me {
			delete(in.claims, k)
		}
	}
}

// podsOf selects rollout r's pods with target t, as selectPodsIn over
// every pod would. In a full plan it reads every pod's key (or, for a
// workload, the pods indexed by owner); in a partial plan, a rollout that
// selects as at its last plan keeps the pods it selected then that
// nothing touched, as they were: the fold makes a new pointer for each
// version of a pod, and every record about a pod touches it, so only the
// touched pods of its namespace are looked up and matched again.
func (p *planning) podsOf(r *projections.Rollout, t target) ([]*projections.Pod, string) {
	u := p.unit
	if u != nil {
		if t.workload != nil {
			u.ownerUID = t.workload.UID
		} else if sel, err := metav1.LabelSelectorAsSelector(r.Spec.Target.Selector); err == nil && !sel.Empty() {
			u.selector, u.selKey = sel, sel.String()
		}
	}
	if p.touched == nil {
		if u != nil && u.ownerUID != "" {
			return selectPodsIn(p.s, p.ownedBy(u.ownerUID), r, t)
		}
		return selectPodsIn(p.s, p.keys, r, t)
	}
	old := p.inc.units[r.Key()]
	if old == nil || old.ownerUID != u.ownerUID || old.selKey != u.selKey || (u.ownerUID == "" && u.selKey == "") {
		return selectPodsIn(p.s, podKeysIn(p.s, r.Namespace), r, t)
	}
	match, problem := matcher(r, t)
	if problem != "" {
		return nil, problem
	}
	var added []string
	for k := range p.touched.Pods {
		if pod := p.s.Pods[k]; pod != nil && pod.Namespace == r.Namespace {
			added = append(added, k)
		}
	}
	sort.Strings(added)
	// Both sorted: merge them rather than sort the rollout's pods again.
	out := make([]*projections.Pod, 0, len(old.pods)+len(added))
	i, j := 0, 0
	for i < len(old.pods) || j < len(added) {
		var k string
		switch {
		case j == len(added) || (i < len(old.pods) && old.pods[i].Key() < added[j]):
			k = old.pods[i].Key()
			if !p.touched.Pods[k] {
				out = append(out, old.pods[i]) // as it was, and selected then
				i++
				continue
			}
			i++ // touched and gone: it would be among the added otherwise
		case i == len(old.pods) || added[j] < old.pods[i].Key():
			k, j = added[j], j+1
		default:
			k, i, j = added[j], i+1, j+1
		}
		if pod := p.s.Pods[k]; pod != nil && match(pod) {
			out = append(out, pod)
		}
	}
	return out, ""
}

// volatile marks the rollout being planned as depending on the plan's
// time in a way no wake-up covers (see unit.volatile).
func (p *planning) volatile() {
	if p.unit != nil {
		p.unit.volatile = true
	}
}

// ownedBy returns the sorted keys of the pods owned by uid, indexing every
// pod by owner at the first call of a full plan: ten workload rollouts
// then cost one pass over the fleet, not ten.
func (p *planning) ownedBy(uid string) []string {
	if p.owners == nil {
		p.owners = map[string][]string{}
		for _, k := range p.keys {
			if o := p.s.Pods[k].Owner; o != nil {
				p.owners[o.UID] = append(p.owners[o.UID], k)
			}
		}
	}
	return p.owners[uid]
}

// selected records the pods the rollout being planned selected.
func (p *planning) selected(pods []*projections.Pod) {
	if p.unit == nil {
		return
	}
	p.unit.pods = pods
}

// initialFor derives pod k's initial ungate: a pod that declares the gate
// and has no condition never becomes Ready otherwise.
func (in *Incremental) initialFor(s *projections.State, k string) {
	delete(in.initial, k)
	pod := s.Pods[k]
	if pod == nil || pod.Pod == nil || pod.Deleting != 0 || !declaresGate(pod.Pod) || gateCondition(pod.Pod) != nil || s.Pending[k] != nil {
		return
	}
	in.initial[k] = Action{Kind: Ungate, Pod: k, UID: pod.UID.String(), Reason: ReasonReady, Message: "initial: no update in progress"}
}

// releaseFor derives pod k's release: a pod gated by Rollbook that no
// rollout drives any more (the rollout was deleted, or now targets other
// pods) is released at once.
func (in *Incremental) releaseFor(p *planning, k string) {
	delete(in.release, k)
	pod := p.s.Pods[k]
	if pod == nil {
		return
	}
	if _, ok := p.claimOf(k); ok || p.busy[k] || pod.Pod == nil || p.s.Pending[k] != nil {
		return
	}
	if c := gateCondition(pod.Pod); c != nil && c.Status() == "False" && c.Reason() == ReasonUpdating {
		in.release[k] = unmark(Action{Kind: Ungate, Pod: k, UID: pod.UID.String(), Reason: ReasonReady, Message: "released: no rollout drives this pod"}, pod)
	}
}

// diffSorted walks two sorted lists once, calling onlyA for each key
// only a holds and onlyB for each only b holds, in order.
func diffSorted(a, b []string, onlyA, onlyB func(string)) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			onlyA(a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			onlyB(b[j])
			j++
		default:
			i++
			j++
		}
	}
}

func keysSorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
