package planner

import (
	"fmt"
	"testing"
	"time"

	"rollbook.dev/rollbook/projections"
)

// midRollout builds a world of sets StatefulSets of size pods each over
// 100 nodes in 3 zones, every one with a new template and a rollout
// (maxUnavailable 10%, scatter by zone), and plays rounds of plan,
// actuate and kubelet so the state is what a controller plans on in the
// middle of a rollout: pods done, gated, patched and untouched.
func midRollout(tb testing.TB, sets, size, rounds int) *world {
	w := newWorld(tb)
	nodes := w.addNodes(100, 3)
	for i := range sets {
		name := fmt.Sprintf("web%d", i)
		w.addFleet(name, size, nodes, "round", "OnDelete", true, false, false,
			[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": name}, nil)
	}
	for i := range sets {
		f := w.sets[fmt.Sprintf("web%d", i)]
		newImage(w, f)
		w.addRollout(fmt.Sprintf("r%d", i), []byte(fmt.Sprintf(
			`{"target":{"workloadRef":{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web%d"}},"strategy":{"maxUnavailable":"10%%","gracePeriodSeconds":0,"scatter":[{"key":%q}]}}`, i, zoneLabel)))
	}
	for range rounds {
		w.tick(time.Second)
		// Observed once the round's actions are done, as a watch that lags
		// would: the StatefulSet controller's sync after each action costs
		// the fleet's size, which at 100,000 pods takes hours.
		w.lagWatch = true
		for _, a := range Plan(w.state).Actions {
			w.do(a, "")
		}
		w.lagWatch = false
		w.flush()
		w.syncFleets()
		w.kubelet()
	}
	return w
}

// BenchmarkPlan is the cost of one plan of a fleet in the middle of its
// rollouts, with the last plan's actions in flight, after one pod changed
// (a kubelet's status write): Plan plans everything, Incremental what the
// change reaches. Shapes are sets×pods: 10×1000 is 10 StatefulSets of
// 1,000 pods and 10 rollouts; 1×10000 one rollout of 10,000 pods (a
// DaemonSet on a large cluster); 100×1000 and 10×10000 are 100,000 pods.
//
//	go test -run '^$' -bench 'BenchmarkPlan/10x1000/' -benchtime 20x ./planner/
func BenchmarkPlan(b *testing.B) {
	for _, shape := range []struct{ sets, size int }{{10, 1000}, {1, 10000}, {100, 1000}, {10, 10000}} {
		b.Run(fmt.Sprintf("%dx%d", shape.sets, shape.size), func(b *testing.B) {
			benchPlan(b, shape.sets, shape.size)
		})
	}
}

func benchPlan(b *testing.B, sets, size int) {
	w := midRollout(b, sets, size, 6)
	for _, a := range Plan(w.state).Actions {
		w.intend(a)
	}
	w.state.TakeTouched()
	keys := keysSorted(w.pods)
	touch := func(i int) {
		p := w.pods[keys[(i*7919)%len(keys)]]
		w.write(p)
	}
	b.Run("full", func(b *testing.B) {
		var n, i int
		for b.Loop() {
			b.StopTimer()
			touch(i)
			i++
			b.StartTimer()
			n = len(Plan(w.state).Actions)
		}
		b.ReportMetric(float64(n), "actions")
	})
	b.Run("incremental", func(b *testing.B) { benchIncremental(b, w, touch) })
	// A failure left on record by a pod long gone (a real controller's
	// state has some): it must not make every pod's plan dearer.
	w.state.Failures["ungate/other/gone-0/u-gone/rev"] = &projections.Failure{Count: 1, Class: "conflict"}
	b.Run("incremental-stale-failure", func(b *testing.B) { benchIncremental(b, w, touch) })
	delete(w.state.Failures, "ungate/other/gone-0/u-gone/rev")
}

func benchIncremental(b *testing.B, w *world, touch func(int)) {
	{
		inc := NewIncremental()
		inc.Plan(w.state, nil)
		var n, i int
		for b.Loop() {
			b.StopTimer()
			touch(i)
			i++
			b.StartTimer()
			n = len(inc.Plan(w.state, w.state.TakeTouched()).Actions)
		}
		b.ReportMetric(float64(n), "actions")
		b.ReportMetric(float64(inc.Partial)/float64(inc.Full+inc.Partial), "partial/plans")
	}
}
