package planner

import (
	"fmt"
	"testing"
	"time"
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
		cs := f.template()
		cs[0].image = "app:v2"
		w.setTemplate(f, cs, "", f.tmpl.Labels, nil)
		w.write(f.obs)
		w.addRollout(fmt.Sprintf("r%d", i), []byte(fmt.Sprintf(
			`{"target":{"workloadRef":{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web%d"}},"strategy":{"maxUnavailable":"10%%","gracePeriodSeconds":0,"scatter":[{"key":%q}]}}`, i, zoneLabel)))
	}
	for range rounds {
		w.tick(time.Second)
		for _, a := range Plan(w.state).Actions {
			w.do(a, "")
		}
		w.kubelet()
	}
	return w
}

var benchWorld *world

// BenchmarkPlan is the cost of one plan of a 10,000-pod fleet (10
// StatefulSets, 10 rollouts) in the middle of its rollout, with the last
// plan's actions in flight, after one pod changed (a kubelet's status
// write): Plan plans everything, Incremental what the change reaches.
//
//	go test -run '^$' -bench 'BenchmarkPlan' -benchtime 20x ./planner/
func BenchmarkPlan(b *testing.B) {
	if benchWorld == nil {
		w := midRollout(b, 10, 1000, 6)
		for _, a := range Plan(w.state).Actions {
			w.intend(a)
		}
		w.state.TakeTouched()
		benchWorld = w
	}
	w := benchWorld
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
	b.Run("incremental", func(b *testing.B) {
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
	})
}
