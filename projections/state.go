package projections

import (
	"encoding/json"
	"fmt"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// State is everything the planner knows, folded from the journal.
type State struct {
	// Seq is the last record folded; Now the time (Unix ns) of the last
	// Tick, the planner's only clock.
	Seq uint64
	Now int64

	Pods      map[string]*Pod      // "namespace/name"
	Rollouts  map[string]*Rollout  // "namespace/name"
	Workloads map[string]*Workload // "Kind/namespace/name"
	Nodes     map[string]*Node     // name
	// Revisions are ControllerRevisions, "namespace/name": the pod
	// template of each StatefulSet and DaemonSet revision.
	Revisions map[string]*Revision

	// Pending holds the action in flight per object key (pod "ns/name" or
	// "rollout:ns/name"): intended and not failed, or succeeded and its
	// result not yet seen on the watch. The planner plans nothing new for
	// an object with an action in flight.
	Pending map[string]*Pending
	// Failures counts failed attempts per action key, for backoff and for
	// conditions; a success clears it.
	Failures map[string]*Failure
	// Emitted holds the keys of events already intended, so an event is
	// recorded once.
	Emitted map[string]bool
	// Recreated remembers, per pod key, the last recreate that succeeded:
	// a pod under that key with another UID is its replacement.
	Recreated map[string]Recreation
	// Analyses holds the measurements of each rollout step's analysis, by
	// AnalysisKey.
	Analyses map[string]*AnalysisRun

	// touched collects what folded records change, once Track is called
	// (see Touched); not part of the state a checkpoint saves.
	touched *Touched
	// shared holds what pods share with each other (see sharing.go); made
	// on first use.
	shared *sharing
}

// Recreation is a recreate that succeeded: the rollout and target revision
// it served and the UID of the pod it replaced.
type Recreation struct {
	Rollout, Revision, UID string
}

// Rollout is an InPlaceRollout as last observed, its spec parsed.
type Rollout struct {
	journal.Observed
	Spec RolloutSpec
	// SpecError says why the spec could not be parsed (shown as a condition).
	SpecError string
	// Status is the status as last written and observed back.
	Status     RolloutStatus
	ObservedAt int64
	// key is Key, made when the rollout is folded (or restored): a plan
	// asks each rollout its key many times, and ordering a namespace's
	// hundred rollouts by age made a key at every comparison.
	key string
}

// Key is "namespace/name".
func (r *Rollout) Key() string {
	if r.key != "" {
		return r.key
	}
	return r.Namespace + "/" + r.Name
}

// Workload is a StatefulSet or DaemonSet as last observed.
type Workload struct {
	journal.Observed
}

// Revision is a ControllerRevision as last observed.
type Revision struct {
	journal.Observed
}

// Node is a node as last observed.
type Node struct {
	journal.Observed
}

// Pending is an action in flight.
type Pending struct {
	Key, Kind, Rollout, Revision string
	// UID is the pod's the action was for.
	UID       string
	IntentSeq uint64
	IntentAt  int64
	// Succeeded: the write returned ResultVersion; the action stays
	// pending until the watch shows the object at that version or later.
	Succeeded     bool
	ResultVersion string
}

// Failure is the failure history of one action key.
type Failure struct {
	Count  int
	Class  string
	Error  string
	LastAt int64
}

// New returns an empty state.
func New() *State {
	return &State{
		Pods: map[string]*Pod{}, Rollouts: map[string]*Rollout{}, Workloads: map[string]*Workload{},
		Nodes: map[string]*Node{}, Revisions: map[string]*Revision{}, Pending: map[string]*Pending{}, Failures: map[string]*Failure{},
		Emitted: map[string]bool{}, Recreated: map[string]Recreation{}, Analyses: map[string]*AnalysisRun{},
	}
}

// Apply folds one record. Records must come in sequence order; an unknown
// kind or an undecodable body is an error, never skipped.
func (s *State) Apply(r journal.Record) error {
	_, err := s.apply(Decode(r))
	return err
}

// ApplyDecoded folds a record Decode read, as Apply would fold it: a
// reader may decode on one core while the fold runs on another (replay).
func (s *State) ApplyDecoded(d Decoded) error {
	_, err := s.apply(d)
	return err
}

// decoded is the body of a record State.apply folded, for Books to reuse
// instead of decoding it again: the Observed of an Observed record, the
// fact of an action record, nil for other kinds.
type decoded struct {
	observed *journal.Observed
	action   *journal.ActionFact
}

// Decoded is a record and its body, decoded for the fold (Decode).
type Decoded struct {
	Record journal.Record
	// One of these, by the record's kind; err if the body did not decode.
	pod      *Pod              // a pod's Observed, unless it is deleted
	observed *journal.Observed // any other Observed
	vanished *journal.Vanished
	action   *journal.ActionFact
	err      error
}

// Action is the fact of an action record; nil for other kinds, or if its
// body did not decode (Err says why).
func (d Decoded) Action() *journal.ActionFact {
	if d.err != nil {
		return nil
	}
	return d.action
}

// Err is why the record's body did not decode.
func (d Decoded) Err() error { return d.err }

// Decode reads a record's body as the fold needs it. An Observed of a pod
// (most are) is decoded on the stack and only the Pod the state keeps is
// made of it: one allocation.
func Decode(r journal.Record) Decoded {
	d := Decoded{Record: r}
	switch r.Kind {
	case journal.KindObserved:
		var o journal.Observed
		if d.err = journal.DecodeObserved(r.Body, &o); d.err == nil && o.Resource == "pods" && !o.Deleted {
			d.pod = NewPod(&o)
		} else {
			other := o
			d.observed = &other
		}
	case journal.KindVanished:
		d.vanished = new(journal.Vanished)
		d.err = r.Decode(d.vanished)
	case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
		d.action = new(journal.ActionFact)
		d.err = r.Decode(d.action)
	}
	return d
}

func (s *State) apply(dr Decoded) (decoded, error) {
	var d decoded
	r := dr.Record
	if r.Seq <= s.Seq && s.Seq != 0 {
		return d, fmt.Errorf("projections: record %d after %d", r.Seq, s.Seq)
	}
	if dr.err != nil {
		return d, fmt.Errorf("projections: record %d: %w", r.Seq, dr.err)
	}
	at := r.Time.UnixNano()
	switch r.Kind {
	case journal.KindObserved:
		if p := dr.pod; p != nil {
			s.observePod(p)
			s.touchObject("pods", p.Namespace, p.Name)
			break
		}
		o := dr.observed
		quiet := s.sameNode(o)
		s.observe(o, at)
		if !quiet {
			s.touchObject(o.Resource, o.Namespace, o.Name)
		}
		d.observed = o
	case journal.KindVanished:
		v := dr.vanished
		s.forget(v.Resource, v.Namespace, v.Name)
		s.touchObject(v.Resource, v.Namespace, v.Name)
	case journal.KindTick:
		if at > s.Now {
			s.Now = at
		}
	case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
		f := dr.action
		s.action(r.Kind, *f, r.Seq, at)
		s.touchAction(f.Pod, f.Rollout)
		d.action = f
	case journal.KindCursor:
	default:
		return d, fmt.Errorf("projections: record %d: %w: %v", r.Seq, journal.ErrUnknownKind, r.Kind)
	}
	// Seq advances only once the record is folded: a record that failed
	// can be folded again (say, by a newer binary) without being refused
	// as out of order.
	s.Seq = r.Seq
	return d, nil
}

// observePod folds a pod's Observed, made into p (Decode).
func (s *State) observePod(p *Pod) {
	// The key is looked up from a buffer and made only for a pod not yet
	// folded: a pod folded again keeps the string its first version made,
	// as the map's key and its own. One allocation less a record, and the
	// key a pod holds for its life is not one made among a record's
	// garbage (BENCHMARKS.md §1, "A rolled pod's state in one allocation").
	var buf [128]byte
	lookup := append(append(append(buf[:0], p.Namespace...), '/'), p.Name...)
	old := s.Pods[string(lookup)]
	if old != nil && old.UID.Is(p.UID) && !old.ResourceVersion.Is(p.ResourceVersion) && old.ResourceVersion.AtLeast(p.ResourceVersion) {
		// An older version after a newer one: a resumed watch catching
		// up past a pod the controller refreshed at restart. Keep the
		// newer view.
		return
	}
	var key string
	if old != nil {
		key = old.Key()
	} else {
		key = string(lookup)
	}
	// The name is the key's end: one string for both, the decoded name
	// left to the garbage collector.
	p.key, p.Name = key, key[len(p.Namespace)+1:]
	if raw, ok := p.Annotations[StateAnnotation]; ok {
		// Most records of a pod are its status: its annotation, and so
		// its state, stay as they were (a state is never written to).
		var was *PodState
		if old != nil {
			was = old.State
		}
		p.State = heldState(raw, was, &s.sharing().states)
		p.Annotations = withoutState(p.Annotations) // p's shape is still NewPod's, its own
	}
	s.sharing().pod(p, old)
	s.Pods[key] = p
	s.settle(key, p.UID, p.ResourceVersion, p.Deleting)
}

// observe folds any other Observed: Decode makes every live pod's a Pod
// (observePod), so a pod's comes here only deleted.
func (s *State) observe(o *journal.Observed, at int64) {
	if o.Deleted {
		s.forget(o.Resource, o.Namespace, o.Name)
		return
	}
	key := o.Namespace + "/" + o.Name
	switch o.Resource {
	case "inplacerollouts.rollbook.dev":
		r := &Rollout{Observed: *o, ObservedAt: at, key: key}
		if err := json.Unmarshal(o.Spec, &r.Spec); err != nil {
			r.SpecError = err.Error()
		}
		if len(o.Status) > 0 {
			_ = json.Unmarshal(o.Status, &r.Status) // a status we cannot read is rewritten
		}
		s.Rollouts[key] = r
		s.settle("rollout:"+key, journal.MakeUID(o.UID), journal.MakeVersion(o.ResourceVersion), 0)
	case "statefulsets.apps":
		s.Workloads["StatefulSet/"+key] = &Workload{Observed: *o}
	case "daemonsets.apps":
		s.Workloads["DaemonSet/"+key] = &Workload{Observed: *o}
	case "controllerrevisions.apps":
		s.Revisions[key] = &Revision{Observed: *o}
	case "nodes":
		s.Nodes[o.Name] = &Node{Observed: *o}
	}
}

// settle ends a succeeded action once the watch shows its result.
func (s *State) settle(key string, uid journal.UID, rv journal.Version, deleting int64) {
	p, ok := s.Pending[key]
	if !ok || !p.Succeeded {
		return
	}
	if p.ResultVersion == "" {
		// A succeeded eviction: settled by the pod terminating or replaced.
		if !uid.IsText(p.UID) || deleting != 0 {
			delete(s.Pending, key)
		}
		return
	}
	if rv.AtLeastText(p.ResultVersion) {
		delete(s.Pending, key)
	}
}

func (s *State) forget(resource, ns, name string) {
	key := ns + "/" + name
	switch resource {
	case "pods":
		delete(s.Pods, key)
		delete(s.Pending, key)
	case "inplacerollouts.rollbook.dev":
		delete(s.Rollouts, key)
		delete(s.Pending, "rollout:"+key)
		s.forgetAnalyses(key)
		for k, rc := range s.Recreated {
			if rc.Rollout == key {
				delete(s.Recreated, k)
			}
		}
	case "statefulsets.apps":
		delete(s.Workloads, "StatefulSet/"+key)
	case "daemonsets.apps":
		delete(s.Workloads, "DaemonSet/"+key)
	case "controllerrevisions.apps":
		delete(s.Revisions, key)
	case "nodes":
		delete(s.Nodes, name)
	}
}

// PendingKey is the Pending map key of an action's object.
func PendingKey(f journal.ActionFact) string {
	if f.Kind == "measure" {
		return MeasurePendingKey(f.Key)
	}
	if f.Pod != "" {
		return f.Pod
	}
	return "rollout:" + f.Rollout
}

func (s *State) action(kind journal.Kind, f journal.ActionFact, seq uint64, at int64) {
	key := PendingKey(f)
	switch kind {
	case journal.KindActionIntended:
		if f.Kind == "event" {
			s.Emitted[f.Key] = true
			return // events are fire-and-forget: nothing waits on them
		}
		s.Pending[key] = &Pending{Key: f.Key, Kind: f.Kind, Rollout: f.Rollout, Revision: f.Revision, UID: f.UID, IntentSeq: seq, IntentAt: at}
	case journal.KindActionSucceeded:
		delete(s.Failures, f.Key)
		if f.Kind == "measure" {
			s.Measured(f, at)
		}
		if f.Kind == "recreate" {
			s.Recreated[key] = Recreation{Rollout: f.Rollout, Revision: f.Revision, UID: f.UID}
		}
		p, ok := s.Pending[key]
		if !ok || p.Key != f.Key {
			return
		}
		if f.ResultVersion == "" && f.Kind == "recreate" {
			// An eviction answers with no resourceVersion: the recreate
			// stays in flight until the watch shows the pod terminating,
			// replaced or gone, so no plan evicts it twice.
			p.Succeeded = true
			if pod := s.Pods[key]; pod == nil || !pod.UID.IsText(p.UID) || pod.Deleting != 0 {
				delete(s.Pending, key)
			}
			return
		}
		if f.ResultVersion == "" {
			delete(s.Pending, key) // nothing to wait for
			return
		}
		p.Succeeded, p.ResultVersion = true, f.ResultVersion
		// The watch may already have shown the result.
		if obs := s.versionOf(key); !obs.IsZero() && obs.AtLeastText(f.ResultVersion) {
			delete(s.Pending, key)
		}
	case journal.KindActionFailed:
		if p, ok := s.Pending[key]; ok && p.Key == f.Key {
			delete(s.Pending, key)
		}
		if f.Class == journal.ClassAbandoned {
			// Not a failure of the action: its process died. Counting it
			// would let a few controller restarts stall a pod for good.
			return
		}
		fl := s.Failures[f.Key]
		if fl == nil {
			fl = &Failure{}
			s.Failures[f.Key] = fl
		}
		fl.Count++
		fl.Class, fl.Error, fl.LastAt = f.Class, f.Error, at
	}
}

// versionOf is the version the fold last saw of a pending action's
// object (a pod's key, or "rollout:" and a rollout's); zero for none.
// resourceVersions are opaque by contract but etcd revisions in practice:
// journal.Version orders them as numbers, anything else by equality.
func (s *State) versionOf(key string) journal.Version {
	if k, ok := strings.CutPrefix(key, "rollout:"); ok {
		if r := s.Rollouts[k]; r != nil {
			return journal.MakeVersion(r.ResourceVersion)
		}
		return journal.Version{}
	}
	if p := s.Pods[key]; p != nil {
		return p.ResourceVersion
	}
	return journal.Version{}
}
