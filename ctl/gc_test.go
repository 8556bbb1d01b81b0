package ctl

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestCatchUpGC: the controller catches up at CatchUpGCPercent, or at the
// GOGC the environment set, which it leaves alone.
func TestCatchUpGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	t.Setenv("GOGC", "")
	if got := CatchUpGC(); got != CatchUpGCPercent {
		t.Fatalf("no GOGC: catching up at %d, want %d", got, CatchUpGCPercent)
	}
	debug.SetGCPercent(150) // as the runtime does for GOGC=150
	t.Setenv("GOGC", "150")
	if got := CatchUpGC(); got != 150 {
		t.Fatalf("GOGC=150 in the environment: catching up at %d, want it left at 150", got)
	}
}

// TestSteadyGC: once caught up, the controller collects at
// SteadyGCPercent, at the percent an operator gives, or at the GOGC the
// environment set, which it leaves alone.
func TestSteadyGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	t.Setenv("GOGC", "")
	got, restore := SteadyGC(0, 0)
	if got != SteadyGCPercent {
		t.Fatalf("no GOGC, no percent given: collecting at %d, want %d", got, SteadyGCPercent)
	}
	restore()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("restored to %d, want the 100 from before", p)
	}
	if got, _ := SteadyGC(60, 0); got != 60 {
		t.Fatalf("--gc-percent 60: collecting at %d", got)
	}
	debug.SetGCPercent(150) // as the runtime does for GOGC=150
	t.Setenv("GOGC", "150")
	got, floor, _ := steadyGC(0, 1<<30)
	if got != 150 {
		t.Fatalf("GOGC=150 in the environment: collecting at %d, want it left at 150, floor or not", got)
	}
	if floor != nil {
		t.Fatal("GOGC=150 in the environment and no --gc-percent: a floor was started over the operator's GOGC")
	}
	if got, _ := SteadyGC(40, 0); got != 40 {
		t.Fatalf("GOGC=150 and --gc-percent 40: collecting at %d, want the flag's 40", got)
	}
}

// TestGCFloorTarget: the percent holds where it leaves at least the
// floor's room; below that, the target gives the room.
func TestGCFloorTarget(t *testing.T) {
	const mib = 1 << 20
	f := &gcFloor{percent: 25, room: 16 * mib}
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 25},             // nothing measured yet
		{128 * mib, 25},     // a large fleet: 32 MiB of room at 25 %
		{64 * mib, 25},      // exactly the room at 25 %
		{32 * mib, 50},      // 16 MiB of room
		{4 * mib, 400},      // a small fleet: 16 MiB
		{5 * mib, 320},      // 16 MiB
		{5 * mib / 2, 463},  // 16 MiB would be 640 %, whose minimum heap is 25.6 MiB: 18.5 MiB is
		{1024, 401},         // the runtime's minimum heap at 401 % is just over the 16 MiB of room
		{64*mib - 1, 26},    // a byte short of 64 MiB: just over 25 %
		{100 * mib / 3, 49}, // 33.3 MiB: 48 % is a byte short of 16 MiB
	} {
		got := f.target(c.live)
		if got != c.want {
			t.Errorf("live heap %d B: GOGC %d, want %d", c.live, got, c.want)
		}
		// The runtime's heap goal: live × (1 + GOGC/100), and never under
		// its minimum heap of 4 MiB × GOGC/100.
		goal := max(c.live+c.live*uint64(got)/100, 4*mib*uint64(got)/100)
		if c.live > 0 && goal < c.live+f.room {
			t.Errorf("live heap %d B at GOGC %d: heap goal %d B leaves %d B of room, under the floor's %d", c.live, got, goal, goal-c.live, f.room)
		}
	}
}

// TestGCFloorFollowsCollections: with a room far larger than this test's
// heap, the floor raises GOGC after a collection; once restored, the
// target from before stands through later collections.
func TestGCFloorFollowsCollections(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	t.Setenv("GOGC", "")

	const room = 1 << 30 // a GiB: this test's heap is a few MiB
	_, f, restore := steadyGC(0, room)
	if f == nil {
		t.Fatal("SteadyGC(0, 1 GiB) started no floor")
	}
	// A GiB over this test's few MiB: GOGC in the thousands (TestGCFloorTarget checks the figure).
	untilCollected(t, f, func() bool { return gcPercent() > 1000 })

	restore()
	if p := gcPercent(); p != 100 {
		t.Fatalf("restored to GOGC %d, want the 100 from before", p)
	}
	f.mu.Lock()
	seen := f.runs
	f.mu.Unlock()
	untilCollected(t, f, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.runs > seen // the cleanup pending at restore ran
	})
	if p := gcPercent(); p != 100 {
		t.Fatalf("a stopped floor set GOGC %d after a collection, want the restored 100", p)
	}
}

// untilCollected collects until cond holds: the floor runs from a
// cleanup, after the collection, on the runtime's cleanup goroutine.
func untilCollected(t *testing.T, f *gcFloor, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("after 10 s of collections: the floor ran %d times, GOGC %d", f.runs, gcPercent())
		}
		runtime.GC()
		time.Sleep(time.Millisecond) // let the cleanup goroutine run
	}
}
