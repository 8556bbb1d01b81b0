package projections

import (
	"maps"

	"rollbook.dev/rollbook/journal"
)

// Touched collects what the records folded since it was last taken
// changed, for a planner that replans only that (planner.Incremental).
// It names objects, not changes: a pod is touched by its own records and
// by any action record about it, a rollout likewise; what the planner
// derives from them is its business. Nodes touch everything: every
// rollout's scatter reads them, and they change rarely.
type Touched struct {
	All       bool
	Pods      map[string]bool // "namespace/name"
	Rollouts  map[string]bool // "namespace/name"
	Workloads map[string]bool // "Kind/namespace/name"
	// Namespaces whose ControllerRevisions changed: every workload
	// rollout there may read them.
	Namespaces map[string]bool
}

// NewTouched returns an empty set.
func NewTouched() *Touched {
	return &Touched{Pods: map[string]bool{}, Rollouts: map[string]bool{}, Workloads: map[string]bool{}, Namespaces: map[string]bool{}}
}

// Track makes the state collect what each record it folds touches, from
// now on, into a new set.
func (s *State) Track() { s.touched = NewTouched() }

// TakeTouched returns what the records folded since the last call (or
// since Track) touched and starts a new set; nil when not tracking. The
// caller hands it to the planner with the state.
func (s *State) TakeTouched() *Touched {
	t := s.touched
	if t != nil {
		s.touched = NewTouched()
	}
	return t
}

// Detached is a shallow copy of s that tracks nothing and shares no
// cache: a private copy folded further (planner.Preview's) must not touch
// s's set, nor s's shared labels from another goroutine. Two states
// folded from the same records are deeply equal Detached, whatever their
// caches hold (a checkpoint's load fills them in another order).
func (s *State) Detached() State {
	c := *s
	c.touched, c.shared = nil, nil
	return c
}

// Empty: nothing was touched.
func (t *Touched) Empty() bool {
	return !t.All && len(t.Pods) == 0 && len(t.Rollouts) == 0 && len(t.Workloads) == 0 && len(t.Namespaces) == 0
}

// sameNode: o is a node record that changes none of the node's facts,
// only its status's heartbeats (a kubelet, or kwok, reports every node
// every minute or so). Nodes touch everything, so such a record touching
// the node would make every plan after one a full plan.
func (s *State) sameNode(o *journal.Observed) bool {
	if o.Resource != "nodes" || o.Deleted || o.Node == nil {
		return false
	}
	n := s.Nodes[o.Name]
	if n == nil || n.Node == nil || n.UID != o.UID {
		return false
	}
	a, b := n.Node, o.Node
	return a.Ready == b.Ready && a.Unschedulable == b.Unschedulable && maps.Equal(a.Labels, b.Labels)
}

// touchObject records an Observed or Vanished object.
func (s *State) touchObject(resource, ns, name string) {
	t := s.touched
	if t == nil {
		return
	}
	key := ns + "/" + name
	switch resource {
	case "pods":
		t.Pods[key] = true
	case "inplacerollouts.rollbook.dev":
		t.Rollouts[key] = true
	case "statefulsets.apps":
		t.Workloads["StatefulSet/"+key] = true
	case "daemonsets.apps":
		t.Workloads["DaemonSet/"+key] = true
	case "controllerrevisions.apps":
		t.Namespaces[ns] = true
	case "nodes":
		t.All = true
	}
}

// touchAction records the objects an action record is about.
func (s *State) touchAction(pod, rollout string) {
	t := s.touched
	if t == nil {
		return
	}
	if pod != "" {
		t.Pods[pod] = true
	}
	if rollout != "" {
		t.Rollouts[rollout] = true
	}
}
