package main

import (
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
type encodedIdle struct {
	Bytes    float64
	DecodeNs float64
}

func encodedIdleOf(s *projections.State) (*encodedIdle, error) {
	bodies := make([][]byte, 0, len(s.Pods))
	total := 0
	for _, p := range s.Pods {
		b, err := journal.EncodeBody(&p.Observed)
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
	return &encodedIdle{Bytes: float64(total) / n, DecodeNs: float64(time.Since(start).Nanoseconds()) / n}, nil
}
