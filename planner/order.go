package planner

import (
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"rollbook.dev/rollbook/projections"
)

// order sorts candidates by the rollout's priority, then interleaves them
// over the scatter keys' node label values so each batch spreads out.
func order(s *projections.State, spec projections.RolloutSpec, pods []*podPlan) []*podPlan {
	type keyed struct {
		pp      *podPlan
		weight  int64
		order   string
		ordinal int // parsed once, not at each comparison
	}
	ks := make([]keyed, len(pods))
	// budgets has refused a rollout whose selectors do not parse: sels
	// then is empty and weighs nothing.
	sels, _ := prioritySelectors(spec)
	for i, pp := range pods {
		ks[i].pp, ks[i].ordinal = pp, ordinal(pp.pod.Name)
		if pr := spec.Strategy.Priority; pr != nil {
			for j, sel := range sels {
				if w := pr.Weights[j]; sel.Matches(labels.Set(pp.pod.Labels)) {
					ks[i].weight += int64(w.Weight)
				}
			}
			if pr.OrderKey != "" {
				ks[i].order = pp.pod.Labels[pr.OrderKey]
			}
		}
	}
	sort.SliceStable(ks, func(a, b int) bool {
		if ks[a].weight != ks[b].weight {
			return ks[a].weight > ks[b].weight
		}
		if ks[a].order != ks[b].order {
			return lessValue(ks[a].order, ks[b].order)
		}
		// Highest ordinal first, as a StatefulSet updates: with a
		// partition, the lowest ordinals keep the old version.
		oa, ob := ks[a].ordinal, ks[b].ordinal
		if oa != ob {
			return oa > ob
		}
		return ks[a].pp.pod.Name < ks[b].pp.pod.Name
	})
	sorted := make([]*podPlan, len(ks))
	for i := range ks {
		sorted[i] = ks[i].pp
	}
	if len(spec.Strategy.Scatter) == 0 {
		return sorted
	}
	return scatter(s, spec.Strategy.Scatter, sorted)
}

// scatter interleaves pods round-robin over the groups of equal scatter
// label values, groups in order of their best pod.
func scatter(s *projections.State, terms []projections.ScatterTerm, pods []*podPlan) []*podPlan {
	var groups [][]*podPlan
	index := map[string]int{}
	for _, pp := range pods {
		var vals []string
		for _, t := range terms {
			v := ""
			if n := s.Nodes[pp.pod.Pod.NodeName]; n != nil && n.Node != nil {
				v = n.Node.Labels[t.Key]
			}
			vals = append(vals, v)
		}
		g := strings.Join(vals, "\x00")
		i, ok := index[g]
		if !ok {
			i = len(groups)
			index[g] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], pp)
	}
	out := make([]*podPlan, 0, len(pods))
	for round := 0; len(out) < len(pods); round++ {
		for _, g := range groups {
			if round < len(g) {
				out = append(out, g[round])
			}
		}
	}
	return out
}

func lessValue(a, b string) bool {
	ia, ea := strconv.ParseInt(a, 10, 64)
	ib, eb := strconv.ParseInt(b, 10, 64)
	if ea == nil && eb == nil {
		return ia < ib
	}
	return a < b
}

// ordinal is the number after a pod name's last dash, or -1.
func ordinal(name string) int {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return -1
	}
	return n
}
