package ctl

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// SteadyGCPercent is the controller's GOGC once it has caught up with the
// cluster (rollbook run --gc-percent), unless the environment sets GOGC.
//
// Nearly all of a large controller's heap is its fleet's state, which
// lives as long as the pods do; what it allocates per event dies within a
// plan. Go's default (100) lets the heap grow to twice what is live
// before it collects, so the room for garbage grows with the fleet. At 25
// (measured on 2026-12-06, against 100 on the same code; the per-pod
// figures have fallen since, BENCHMARKS.md §1) a tracked pod's steady
// peak RSS at 100,000 pods is 1.13 KB instead of
// 1.88 (1.75 instead of 2.54 under a rollout), and a 10,000-pod rollout's
// controller peaks at 145 MiB instead of 179, for 1.2× its CPU: marking
// runs four times as often for the same garbage. Catching up allocates
// the most (a replay takes 1.7× the CPU at 25), so the controller does it
// at CatchUpGCPercent and lowers the target only then (BENCHMARKS.md §1).
const SteadyGCPercent = 25

// CatchUpGCPercent is the controller's GOGC while it catches up (the fold
// of the journal at start-up, the first lists of the fleet), unless the
// environment sets GOGC.
//
// Catching up allocates the most, and at Go's default (100) the heap
// grows to twice what is live between collections: the fleet's state is
// then spread over twice the heap's spans, and the unused slots among it
// stay for the fleet's life, since Go never moves an object. At 100,000
// pods of a finished fleet, catching up at 50 instead of 100 took the
// catch-up's peak RSS from 1.64–1.81 to 1.29–1.39 KB a pod and the steady
// peak after it from 0.99–1.02 to 0.97–0.98, for 1.09–1.11× the CPU of
// the catch-up and the steady updates together (BENCHMARKS.md §1, "What
// the catch-up leaves behind"). At 25, one run gave ~20 B a pod less than
// at 50, for 1.4× the CPU of catching up at 100.
const CatchUpGCPercent = 50

// CatchUpGC sets the collector's target for catching up: CatchUpGCPercent,
// unless the environment sets GOGC (which the runtime already follows).
// It returns the percent now in force.
func CatchUpGC() int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(CatchUpGCPercent)
	}
	return gcPercent()
}

// SteadyGCRoom is the least room, in bytes, that the controller leaves
// its heap to grow by between collections once caught up (rollbook run
// --gc-room-mib), whatever the percent.
//
// A percent alone makes a small fleet's room small too: at 25 a
// 1,000-pod controller's heap of a few MiB collects after every MiB or
// so allocated, and marking then runs beside nearly every event, so each
// of Rollbook's own steps took 9–12 ms median; with this floor, 4–5, as
// at Go's default, for the same peak RSS (BENCHMARKS.md §3, "A floor in
// bytes under the GC target"). The floor is a fixed amount of memory,
// not one per pod: a heap of up to 16 MiB collects at least as seldom as
// at Go's default, one over 64 MiB (some 86,000 pods under a rollout) at
// the percent, where the per-pod figures are measured.
const SteadyGCRoom = 16 << 20

// SteadyGC sets the garbage collector's target for a controller that has
// caught up: percent when given (> 0), else SteadyGCPercent unless the
// environment sets GOGC (which the runtime already follows). While the
// percent is Rollbook's (given, or the default), room is the least the
// heap may grow by between collections (≤ 0: no floor): after each
// collection the target is raised so that live heap × percent is at
// least room. Then SteadyGC returns to the OS the pages the catch-up's
// garbage took, which the runtime would otherwise keep for a while. It
// returns the percent now in force (0 when collection is off), and
// restore, which stops the floor and sets back the target from before: a
// controller that stops leading catches up at it again when it leads
// once more.
func SteadyGC(percent int, room int64) (now int, restore func()) {
	now, _, restore = steadyGC(percent, room)
	return now, restore
}

// steadyGC is SteadyGC, and the floor it started (nil for none).
func steadyGC(percent int, room int64) (now int, floor *gcFloor, restore func()) {
	before := gcPercent()
	switch {
	case percent > 0:
	case os.Getenv("GOGC") == "":
		percent = SteadyGCPercent
	default:
		room = 0 // the operator's GOGC stands as given
	}
	if percent > 0 {
		debug.SetGCPercent(percent)
		if room > 0 {
			floor = &gcFloor{percent: percent, room: uint64(room)}
			floor.afterGC()
		}
	}
	debug.FreeOSMemory()
	return gcPercent(), floor, func() {
		if floor != nil {
			floor.stop()
		}
		debug.SetGCPercent(before)
	}
}

// gcFloor raises GOGC above percent while the live heap is small enough
// that percent of it would be less than room. It runs once after each
// collection, from a cleanup attached to an object that only that
// collection can free: the live heap changes only when the collector has
// measured it, so there is nothing to poll.
type gcFloor struct {
	percent int
	room    uint64

	mu      sync.Mutex
	stopped bool
	runs    int // collections seen, stopped or not: for tests
}

// sentinel is what the floor's cleanup hangs on. Its pointer keeps it out
// of the tiny allocator, whose blocks are freed together (a cleanup on a
// tiny object may never run).
type sentinel struct{ _ *byte }

// afterGC sets the target for the live heap the last collection measured,
// then waits for the next collection.
func (f *gcFloor) afterGC() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs++
	if f.stopped {
		return
	}
	if want := f.target(liveHeap()); want != gcPercent() {
		debug.SetGCPercent(want)
	}
	runtime.AddCleanup(new(sentinel), func(f *gcFloor) { f.afterGC() }, f)
}

// target is the GOGC for a live heap of live bytes: percent, or more when
// percent of live would leave less than room to grow.
func (f *gcFloor) target(live uint64) int {
	if live == 0 || live*uint64(f.percent) >= f.room*100 {
		return f.percent
	}
	want := (f.room*100 + live - 1) / live
	// The runtime's heap goal is never under its minimum heap, 4 MiB ×
	// GOGC/100 (runtime/mgcpacer.go), so over a live heap of under
	// 4 MiB the GOGC that gives room would give more: stop where that
	// minimum is live + room.
	const minHeapAt100 = 4 << 20
	most := max(((live+f.room)*100+minHeapAt100-1)/minHeapAt100, uint64(f.percent))
	return int(min(want, most))
}

// stop ends the floor: the cleanup pending for the next collection does
// nothing, so a restored target is not raised again.
func (f *gcFloor) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
}

// liveHeap is the heap the last collection found live, in bytes.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gcPercent is the GOGC in force (0 when collection is off).
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
