package planner

import (
	"fmt"
	"math/rand/v2"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestOrderedIsOrder: the candidates start takes one at a time (ordered)
// come in the order of the whole sort (order), with and without weights,
// an order key and scatter, over random fleets whose pods share weights,
// ordinals and nodes.
func TestOrderedIsOrder(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		s := projections.New()
		zones := 1 + rng.IntN(4)
		for i := range 1 + rng.IntN(8) {
			name := fmt.Sprintf("node-%d", i)
			labels := map[string]string{"zone": fmt.Sprint("z", rng.IntN(zones))}
			if rng.IntN(3) > 0 {
				labels["rack"] = fmt.Sprint("r", rng.IntN(3))
			}
			s.Nodes[name] = &projections.Node{Observed: journal.Observed{Resource: "nodes", Name: name, Node: &journal.NodeFacts{Ready: true, Labels: labels}}}
		}
		var spec projections.RolloutSpec
		switch rng.IntN(3) {
		case 1:
			spec.Strategy.Priority = &projections.Priority{Weights: []projections.WeightTerm{
				{Weight: 10, Selector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "a"}}},
				{Weight: 5, Selector: metav1.LabelSelector{MatchLabels: map[string]string{"canary": "yes"}}},
			}}
		case 2:
			spec.Strategy.Priority = &projections.Priority{OrderKey: "rank"}
		}
		if rng.IntN(2) == 0 {
			spec.Strategy.Scatter = []projections.ScatterTerm{{Key: "zone"}}
			if rng.IntN(2) == 0 {
				spec.Strategy.Scatter = append(spec.Strategy.Scatter, projections.ScatterTerm{Key: "rack"})
			}
		}
		var fresh, cached []*podPlan
		for i := range rng.IntN(60) {
			name := fmt.Sprintf("web-%d", rng.IntN(40))
			if rng.IntN(5) == 0 {
				name = fmt.Sprintf("db-%c%d", 'a'+rng.IntN(3), i) // no ordinal after the dash
			}
			name = fmt.Sprintf("%s-%d", name, i) // unique, as pods of one namespace are
			if rng.IntN(6) == 0 {
				name = fmt.Sprint("solo", i)
			}
			labels := map[string]string{"tier": []string{"a", "b"}[rng.IntN(2)], "rank": fmt.Sprint(rng.IntN(5))}
			if rng.IntN(4) == 0 {
				labels["canary"] = "yes"
			}
			pod := projections.NewPod(&journal.Observed{Resource: "pods", Namespace: "ns", Name: name, Labels: labels,
				Pod: &journal.PodFacts{NodeName: fmt.Sprintf("node-%d", rng.IntN(len(s.Nodes)+1))}}) // one node unseen
			fresh = append(fresh, &podPlan{pod: pod, stage: stageIdle})
			cached = append(cached, &podPlan{pod: pod, stage: stageIdle})
		}
		want := order(s, spec, fresh)
		groups := scatterGroups{}
		for round := range 2 { // the second time with every sort key found
			next := ordered(s, spec, cached, groups)
			var got []*projections.Pod
			for pp := next(); pp != nil; pp = next() {
				got = append(got, pp.pod)
			}
			if len(got) != len(want) {
				t.Fatalf("seed %d round %d: ordered yields %d candidates, order %d", seed, round, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i].pod {
					t.Fatalf("seed %d round %d (spec %+v): candidate %d is %s, order has %s", seed, round, spec.Strategy, i, got[i].Name, want[i].pod.Name)
				}
			}
		}
	}
}
