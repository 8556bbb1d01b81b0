package ctl

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
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
// at Go's default and lowers the target only then (BENCHMARKS.md §1).
const SteadyGCPercent = 25

// SteadyGC sets the garbage collector's target for a controller that has
// caught up: percent when given (> 0), else SteadyGCPercent unless the
// environment sets GOGC (which the runtime already follows). Then it
// returns to the OS the pages the catch-up's garbage took, which the
// runtime would otherwise keep for a while. It returns the percent now in
// force (0 when collection is off), and restore, which sets back the
// target from before: a controller that stops leading catches up at it
// again when it leads once more.
func SteadyGC(percent int) (now int, restore func()) {
	before := gcPercent()
	switch {
	case percent > 0:
		debug.SetGCPercent(percent)
	case os.Getenv("GOGC") == "":
		debug.SetGCPercent(SteadyGCPercent)
	}
	debug.FreeOSMemory()
	return gcPercent(), func() { debug.SetGCPercent(before) }
}

// gcPercent is the GOGC in force (0 when collection is off).
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
