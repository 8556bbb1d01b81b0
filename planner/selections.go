package planner

import "slices"

// selections index units by the pods they selected (Incremental). Most
// pods are selected by one rollout: that one is a string in one map, and
// only the few pods several rollouts select have a list in a second. A
// list per pod cost every pod of a fleet its list's array and header.
type selections struct {
	first map[string]string   // pod key → the first rollout that selected it
	more  map[string][]string // pod key → the others, in the order they came
}

func newSelections() selections {
	return selections{first: map[string]string{}, more: map[string][]string{}}
}

// each calls f with each rollout that selected pod k, first come first.
func (s selections) each(k string, f func(rk string)) {
	rk, ok := s.first[k]
	if !ok {
		return
	}
	f(rk)
	for _, rk := range s.more[k] {
		f(rk)
	}
}

// add records that rollout rk selected pod k, if not yet recorded.
func (s selections) add(k, rk string) {
	first, ok := s.first[k]
	switch {
	case !ok:
		s.first[k] = rk
	case first != rk && !slices.Contains(s.more[k], rk):
		s.more[k] = append(s.more[k], rk)
	}
}

// remove drops rollout rk from pod k's selections; the next in line
// becomes the first.
func (s selections) remove(k, rk string) {
	if first, ok := s.first[k]; !ok {
		return
	} else if first != rk {
		if more := slices.DeleteFunc(s.more[k], func(o string) bool { return o == rk }); len(more) > 0 {
			s.more[k] = more
		} else {
			delete(s.more, k)
		}
		return
	}
	more := s.more[k]
	if len(more) == 0 {
		delete(s.first, k)
		return
	}
	s.first[k] = more[0]
	if len(more) > 1 {
		s.more[k] = more[1:]
	} else {
		delete(s.more, k)
	}
}
