package ingest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLagHistogram: lags land in the first bucket that holds them, the
// histogram is cumulative across streams, and lags past the last bound
// count only in the total.
func TestLagHistogram(t *testing.T) {
	in := &Ingester{streams: []*stream{{}, {}}}
	now := time.Unix(1_800_000_000, 0)
	in.streams[0].lag.observe(now, []time.Time{now.Add(-500 * time.Microsecond), now.Add(-30 * time.Millisecond)})
	in.streams[1].lag.observe(now, []time.Time{now.Add(-30 * time.Millisecond), now.Add(-time.Minute)})
	l := in.Lag()
	if l.Count != 4 || l.Sum != time.Minute+60*time.Millisecond+500*time.Microsecond {
		t.Fatalf("count %d sum %v", l.Count, l.Sum)
	}
	for i, b := range LagBuckets {
		want := uint64(1) // 0.5 ms
		if b >= .05 {
			want = 3 // and the two of 30 ms; the minute is past every bound
		}
		if l.Buckets[i] != want {
			t.Errorf("bucket le=%v holds %d, want %d", b, l.Buckets[i], want)
		}
	}
}

// TestHealth: the ingester is synced once every stream is, and failing
// since the earliest failure of a stream that has not connected since.
func TestHealth(t *testing.T) {
	in := &Ingester{streams: []*stream{{res: Pods, ns: "shop"}, {res: Nodes}}}
	if h := in.Health(); h.Synced || !h.FailingSince.IsZero() {
		t.Fatalf("new: %+v", h)
	}
	t0 := time.Unix(1_800_000_000, 0)
	in.streams[1].health.failed(t0, errors.New("nodes is forbidden"))
	in.streams[0].health.failed(t0.Add(time.Second), errors.New("connection refused"))
	in.streams[0].health.failed(t0.Add(2*time.Second), errors.New("connection refused again"))
	if h := in.Health(); !h.FailingSince.Equal(t0) || !strings.Contains(h.Failing, "nodes watch failing: nodes is forbidden") {
		t.Errorf("two failing: %+v", h)
	}
	in.streams[1].health.connected()
	if h := in.Health(); !h.FailingSince.Equal(t0.Add(time.Second)) || h.Failing != "pods in shop watch failing: connection refused again" {
		t.Errorf("one failing: %+v", h)
	}
	in.streams[0].health.connected()
	for _, s := range in.streams {
		s.health.synced.Store(true)
	}
	if h := in.Health(); !h.Synced || !h.FailingSince.IsZero() || h.Failing != "" {
		t.Errorf("all connected: %+v", h)
	}
}
