package main

import (
	"slices"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// encodedIdle puts figures on the trade named in BENCHMARKS §1: holding an
// idle pod (one no rollout is updating) as its folded record encoded, and
// decoding it when a plan reads it, instead of decoded. Bytes is the mean
// encoded size of a folded pod (what the fold keeps, slimmed, in the
// journal's own encoding); DecodeNs the mean time to decode one back, which
// every plan that reads all pods (a new rollout, a full plan) would pay per
// idle pod.
//
// Own is what a pod has that no other pod has: the bytes of the distinct
// strings no other pod holds (name, UID, version, container IDs, label
// values) and 8 B for each timestamp and counter. A representation holding only
// that per pod, and the rest once for the fleet, would cost about this.
type encodedIdle struct {
	Bytes    float64
	DecodeNs float64
	Own      float64
}

func encodedIdleOf(s *projections.State) (*encodedIdle, error) {
	bodies := make([][]byte, 0, len(s.Pods))
	total := 0
	for _, p := range s.Pods {
		o := p.Observed() // its labels all given, as its record has them
		b, err := journal.EncodeBody(&o)
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, b)
		total += len(b)
	}
	start := time.Now()
	for _, b := range bodies {
		var o journal.Observed
		if err := journal.DecodeBody(b, &o); err != nil {
			return nil, err
		}
	}
	n := float64(len(bodies))
	decode := float64(time.Since(start).Nanoseconds()) / n
	// holders: how many pods hold each string (a pod's name is also its
	// pod-name label's value: one string of its own, held twice).
	holders := map[string]int{}
	held := func(p *projections.Pod) *journal.Observed {
		o := p.Observed()
		o.Labels = p.RawLabels // as the fold holds them
		return &o
	}
	for _, p := range s.Pods {
		for v := range distinctStrings(held(p)) {
			holders[v]++
		}
	}
	own := 0
	for _, p := range s.Pods {
		o := held(p)
		for v := range distinctStrings(o) {
			if holders[v] == 1 {
				own += len(v)
			}
		}
		own += 8 * podNumbers(o)
	}
	return &encodedIdle{Bytes: float64(total) / n, DecodeNs: decode, Own: float64(own) / n}, nil
}

func distinctStrings(o *journal.Observed) map[string]bool {
	m := map[string]bool{}
	podStrings(o, func(v string) { m[v] = true })
	return m
}

// podStrings calls fn with every string a folded pod holds.
func podStrings(o *journal.Observed, fn func(string)) {
	for _, v := range []string{o.Namespace, o.Name, o.UID, o.ResourceVersion, o.Truncated} {
		fn(v)
	}
	for k, v := range o.Labels {
		fn(k)
		fn(v)
	}
	for k, v := range o.Annotations {
		fn(k)
		fn(v)
	}
	for _, v := range o.AnnotationKeys {
		fn(v)
	}
	if w := o.Owner; w != nil {
		for _, v := range []string{w.APIVersion, w.Kind, w.Name, w.UID} {
			fn(v)
		}
	}
	f := o.Pod
	if f == nil {
		return
	}
	for _, v := range []string{f.NodeName, f.Phase, f.PodIP, f.QOSClass} {
		fn(v)
	}
	for _, v := range slices.Concat(f.ReadinessGates, f.EnvFieldRefs) {
		fn(v)
	}
	for _, c := range f.Conditions {
		for _, v := range []string{c.Type, c.Status, c.Reason, c.Message} {
			fn(v)
		}
	}
	// NB: slices.Concat, not append: appending to the fold's own slices
	// could write into their spare capacity.
	for _, c := range slices.Concat(f.Containers, f.InitContainers) {
		for _, v := range []string{c.Name, c.Image, c.ImageID, c.ContainerID, c.State, c.StatusImage} {
			fn(v)
		}
		for _, m := range []map[string]string{c.Requests, c.Limits, c.ActualRequests, c.ActualLimits} {
			for k, v := range m {
				fn(k)
				fn(v)
			}
		}
	}
}

// podNumbers counts a folded pod's timestamps and counters that are set.
func podNumbers(o *journal.Observed) int {
	n := 0
	for _, v := range []int64{o.Generation, o.Created, o.Deleting} {
		if v != 0 {
			n++
		}
	}
	if f := o.Pod; f != nil {
		for _, c := range f.Conditions {
			if c.LastTransition != 0 {
				n++
			}
		}
		for _, c := range slices.Concat(f.Containers, f.InitContainers) {
			if c.RestartCount != 0 {
				n++
			}
		}
	}
	return n
}
