package ingest

import (
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/watch"
)

// LagBuckets are the upper bounds, in seconds, of Lag's buckets.
var LagBuckets = lagBounds[:]

var lagBounds = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Lag is a histogram of ingest lag: for each watch event journaled, the
// time from its arrival off the watch to the return of the append that
// made it a record (and so visible to the planner). Under load it is the
// journal's fsync plus the wait for the batch before it.
type Lag struct {
	Count uint64
	Sum   time.Duration
	// Buckets[i] counts the events whose lag was at most LagBuckets[i]
	// seconds (cumulative, as Prometheus histograms are).
	Buckets []uint64
}

// Lag returns the ingest lag of every stream since New.
func (in *Ingester) Lag() Lag {
	l := Lag{Buckets: make([]uint64, len(lagBounds))}
	for _, s := range in.streams {
		for i := range lagBounds {
			l.Buckets[i] += s.lag.counts[i].Load()
		}
		l.Count += s.lag.count.Load()
		l.Sum += time.Duration(s.lag.sumNanos.Load())
	}
	for i := 1; i < len(l.Buckets); i++ {
		l.Buckets[i] += l.Buckets[i-1]
	}
	return l
}

// arrival is a watch event and when it came off the watch.
type arrival struct {
	ev watch.Event
	at time.Time
}

// lagCounts is one stream's histogram, non-cumulative: counts[i] holds
// lags in (bound i-1, bound i]; those above the last bound count only in
// count.
type lagCounts struct {
	counts   [len(lagBounds)]atomic.Uint64
	count    atomic.Uint64
	sumNanos atomic.Int64
}

// observe records the lag of events that arrived at each of arrived and
// were committed at now.
func (l *lagCounts) observe(now time.Time, arrived []time.Time) {
	for _, at := range arrived {
		d := now.Sub(at)
		l.count.Add(1)
		l.sumNanos.Add(int64(d))
		for i, b := range lagBounds {
			if d.Seconds() <= b {
				l.counts[i].Add(1)
				break
			}
		}
	}
}
