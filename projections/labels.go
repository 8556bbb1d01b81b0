package projections

import (
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// The two labels a StatefulSet gives each of its pods that no other pod
// has: the pod's name and its ordinal.
const (
	PodNameLabel  = "statefulset.kubernetes.io/pod-name"
	PodIndexLabel = "apps.kubernetes.io/pod-index"
)

// Implied is the value the fold keeps for a StatefulSet pod's name and
// ordinal labels when they say what its name says. The apiserver refuses
// it as a label value, so no pod has it of its own.
//
// A StatefulSet pod's other labels are its revision's, the same on every
// pod made from it, but those two made each pod's map its own: ~320 B of
// a pod's ~2.6 KB in the fold (BENCHMARKS §1). With them implied, the pods
// of a revision share one map. Pod's label methods (Label, LookupLabel,
// LabelSet, Labels) give them back; the field RawLabels holds the shared
// map, never to be changed (as every map of a decoded record: see
// journal's interner). A checkpoint saves it as it is, and its load shares
// it again.
const Implied = "(implied by the pod name)"

// Label returns the pod's label k, "" if it has none.
func (p *Pod) Label(k string) string {
	v, _ := p.LookupLabel(k)
	return v
}

// LookupLabel returns the pod's label k and whether it has it.
func (p *Pod) LookupLabel(k string) (string, bool) {
	v, ok := p.RawLabels[k]
	if ok && v == Implied {
		v = p.implied(k)
	}
	return v, ok
}

// implied is label k's value where the fold keeps it Implied.
func (p *Pod) implied(k string) string {
	switch k {
	case PodNameLabel:
		return p.Name
	case PodIndexLabel:
		return ordinal(p.Name)
	}
	return Implied // only those two are ever kept so
}

// HasLabels says whether the pod has any label at all (a JSON patch adding
// one must first create the map).
func (p *Pod) HasLabels() bool { return len(p.RawLabels) > 0 }

// LabelSet is the pod's labels for a selector to match, without a copy.
func (p *Pod) LabelSet() labels.Labels { return (*podLabels)(p) }

// Labels returns all the pod's labels: a new map when some are implied,
// else the map the fold keeps, which the caller must not change.
func (p *Pod) Labels() map[string]string {
	m := p.RawLabels
	if m[PodNameLabel] != Implied && m[PodIndexLabel] != Implied {
		return m
	}
	m = maps.Clone(m)
	for _, k := range []string{PodNameLabel, PodIndexLabel} {
		if m[k] == Implied {
			m[k] = p.implied(k)
		}
	}
	return m
}

// SetLabels makes m the pod's labels, all of them given (none Implied):
// for a copy of a pod that changes its labels (the planner's dry run).
func (p *Pod) SetLabels(m map[string]string) { p.RawLabels = m }

type podLabels Pod

func (l *podLabels) Has(k string) bool              { _, ok := (*Pod)(l).LookupLabel(k); return ok }
func (l *podLabels) Get(k string) string            { return (*Pod)(l).Label(k) }
func (l *podLabels) Lookup(k string) (string, bool) { return (*Pod)(l).LookupLabel(k) }

// ordinal is what follows a StatefulSet pod's name's last "-".
func ordinal(name string) string { return name[strings.LastIndexByte(name, '-')+1:] }

// implyLabels makes p's name and ordinal labels Implied when they say what
// its name says, and shares its labels: old's, the pod as it was, when
// they are the same (most records of a pod are its status), else through
// sets.
func implyLabels(p, old *Pod, sets *labelSets) {
	m := p.RawLabels
	name, index := m[PodNameLabel], m[PodIndexLabel]
	switch {
	case name == Implied && index == Implied: // from a checkpoint
	case name == p.Name && index == ordinal(p.Name) && isOrdinal(index):
	default:
		return
	}
	if old != nil && sharedAs(old.RawLabels, m) {
		p.RawLabels = old.RawLabels
		return
	}
	p.RawLabels = sets.share(m)
}

// isOrdinal says whether s is an ordinal as the StatefulSet controller
// writes it: decimal digits, no leading zero.
func isOrdinal(s string) bool {
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// labelSets holds StatefulSet pods' labels with the two Implied, one map
// per distinct set, in a fixed number of slots indexed by a hash of the
// set (a miss replaces the slot): a namespace has a few such sets per
// StatefulSet, one per revision (and per zone where admission copies the
// node's zone onto pods), and one no pod holds any more is not kept for
// ever. Sets that collide in a slot still share whenever consecutive
// records find theirs there.
type labelSets struct {
	slots [labelSetSlots]map[string]string
}

const labelSetSlots = 256

// share returns the map of m's labels with the two Implied (m has both).
func (c *labelSets) share(m map[string]string) map[string]string {
	var h uint32
	for k, v := range m {
		if k != PodNameLabel && k != PodIndexLabel {
			h += fnv32(k) ^ (fnv32(v) * 16777619) // a sum: map order does not matter
		}
	}
	slot := &c.slots[h%labelSetSlots]
	if sharedAs(*slot, m) {
		return *slot
	}
	s := maps.Clone(m)
	s[PodNameLabel], s[PodIndexLabel] = Implied, Implied
	*slot = s
	return s
}

// sharedAs says whether s is a shared map (the two Implied) of m's labels:
// the same keys, and the same values but for those two.
func sharedAs(s, m map[string]string) bool {
	if len(s) != len(m) || s[PodNameLabel] != Implied || s[PodIndexLabel] != Implied {
		return false
	}
	for k, v := range s {
		if w, ok := m[k]; !ok || (w != v && k != PodNameLabel && k != PodIndexLabel) {
			return false
		}
	}
	return true
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
