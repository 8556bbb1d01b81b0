package ingest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Health is what a readiness probe needs to know of the ingester.
type Health struct {
	// Synced reports that every stream has had a complete view once (a
	// resumed watch or a finished list): WaitSynced has returned.
	Synced bool
	// FailingSince is when the longest-failing stream's current run of
	// failed rounds began; zero while every stream is connected.
	FailingSince time.Time
	// Failing names that stream and its last error.
	Failing string
}

// Health reports the ingester's health; safe to call at any time.
func (in *Ingester) Health() Health {
	h := Health{Synced: true}
	for _, s := range in.streams {
		if !s.health.synced.Load() {
			h.Synced = false
		}
		since, err := s.health.failing()
		if !since.IsZero() && (h.FailingSince.IsZero() || since.Before(h.FailingSince)) {
			h.FailingSince = since
			h.Failing = fmt.Sprintf("%s watch failing: %v", s.scope(), err)
		}
	}
	return h
}

// scope names a stream in messages: "pods in shop", "nodes".
func (s *stream) scope() string {
	if s.ns == "" {
		return s.res.Name()
	}
	return s.res.Name() + " in " + s.ns
}

// streamHealth tracks one stream. A stream fails from the first round
// that ends in an error (the watch or list refused, the connection lost,
// the cursor's probe failing) until a round connects again: a watch
// established, a list page served. NB: a watch that connects and then
// fails at once on every round looks healthy to this; such errors come
// from the server mid-stream and are logged with each backoff.
type streamHealth struct {
	synced atomic.Bool

	mu    sync.Mutex
	since time.Time // zero when connected
	err   error
}

func (h *streamHealth) failed(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		h.since = now
	}
	h.err = err
}

func (h *streamHealth) connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.since, h.err = time.Time{}, nil
}

func (h *streamHealth) failing() (time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.since, h.err
}
