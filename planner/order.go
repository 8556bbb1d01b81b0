package planner

import (
	"cmp"
	"slices"
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
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if a.weight != b.weight {
			return cmp.Compare(b.weight, a.weight)
		}
		if a.order != b.order {
			// As sort.SliceStable with lessValue as the less function did:
			// the same comparisons in the same order, so the same result
			// whatever the values (lessValue mixes numbers and strings).
			switch {
			case lessValue(a.order, b.order):
				return -1
			case lessValue(b.order, a.order):
				return 1
			}
			return 0
		}
		// Highest ordinal first, as a StatefulSet updates: with a
		// partition, the lowest ordinals keep the old version.
		if a.ordinal != b.ordinal {
			return cmp.Compare(b.ordinal, a.ordinal)
		}
		return strings.Compare(a.pp.pod.Name, b.pp.pod.Name)
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
	byNode := map[string]int{} // a node's group, found once per node
	for _, pp := range pods {
		node := pp.pod.Pod.NodeName
		i, ok := byNode[node]
		if !ok {
			var vals []string
			for _, t := range terms {
				v := ""
				if n := s.Nodes[node]; n != nil && n.Node != nil {
					v = n.Node.Labels[t.Key]
				}
				vals = append(vals, v)
			}
			g := strings.Join(vals, "\x00")
			if i, ok = index[g]; !ok {
				i = len(groups)
				index[g] = i
				groups = append(groups, nil)
			}
			byNode[node] = i
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
