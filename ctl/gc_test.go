package ctl

import (
	"runtime/debug"
	"testing"
)

// TestSteadyGC: once caught up, the controller collects at
// SteadyGCPercent, at the percent an operator gives, or at the GOGC the
// environment set, which it leaves alone.
func TestSteadyGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	t.Setenv("GOGC", "")
	got, restore := SteadyGC(0)
	if got != SteadyGCPercent {
		t.Fatalf("no GOGC, no percent given: collecting at %d, want %d", got, SteadyGCPercent)
	}
	restore()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("restored to %d, want the 100 from before", p)
	}
	if got, _ := SteadyGC(60); got != 60 {
		t.Fatalf("--gc-percent 60: collecting at %d", got)
	}
	debug.SetGCPercent(150) // as the runtime does for GOGC=150
	t.Setenv("GOGC", "150")
	if got, _ := SteadyGC(0); got != 150 {
		t.Fatalf("GOGC=150 in the environment: collecting at %d, want it left at 150", got)
	}
	if got, _ := SteadyGC(40); got != 40 {
		t.Fatalf("GOGC=150 and --gc-percent 40: collecting at %d, want the flag's 40", got)
	}
}
