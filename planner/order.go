package planner

import (
	"cmp"
	"container/heap"
	"slices"
	"strconv"
	"strings"

	"rollbook.dev/rollbook/projections"
)

// order sorts candidates by the rollout's priority, then interleaves them
// over the scatter keys' node label values so each batch spreads out.
func order(s *projections.State, spec projections.RolloutSpec, pods []*podPlan) []*podPlan {
	type keyed struct {
		pp    *podPlan
		key   *sortKey
		order string
	}
	ks := make([]keyed, len(pods))
	keyOf := sortKeys(spec)
	for i, pp := range pods {
		ks[i].pp, ks[i].key = pp, keyOf(pp)
		if pr := spec.Strategy.Priority; pr != nil && pr.OrderKey != "" {
			ks[i].order = pp.pod.Label(pr.OrderKey)
		}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if a.key.weight != b.key.weight || a.order == b.order {
			return compareKeys(a.pp, b.pp, keyOf)
		}
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
			if i = groupOf(s, terms, node, index, len(groups)); i == len(groups) {
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

// ordered yields candidates in order's order, one at a time: a start
// takes the first few of them, at most the rollout's budget, and sorting
// a thousand candidates to take two was most of what a plan cost. Each
// candidate's sort key is found once per classification (podPlan.sortKey):
// a pod waits as a candidate across many plans. It reorders pods, which
// the callers make afresh for each plan, instead of copying them.
func ordered(s *projections.State, spec projections.RolloutSpec, pods []*podPlan, numbered scatterGroups) func() *podPlan {
	if pr := spec.Strategy.Priority; pr != nil && pr.OrderKey != "" {
		// lessValue mixes numbers and strings, so its order need not be
		// total: only the whole stable sort gives order's result.
		sorted, i := order(s, spec, pods), 0
		return func() *podPlan {
			if i == len(sorted) {
				return nil
			}
			i++
			return sorted[i-1]
		}
	}
	keyOf := sortKeys(spec)
	if len(spec.Strategy.Scatter) == 0 {
		h := &candidates{keyOf: keyOf, pods: pods}
		heap.Init(h)
		return h.next
	}
	// As scatter: groups of equal scatter label values, in the order of
	// their best pod, taken round-robin. The first round takes each
	// group's best pod, found in one pass; a start seldom takes more pods
	// than there are groups, so the groups are heaped only for a second.
	terms := numbered.of(spec.Strategy.Scatter)
	for _, pp := range pods {
		if pp.group == 0 {
			pp.group = terms.group(s, pp.pod.Pod.NodeName)
		}
	}
	slot := make([]int32, terms.n+1) // group → its index in best, +1
	of := make([]int, len(pods))     // each candidate's group
	var best []*podPlan              // each group's best candidate
	for j, pp := range pods {
		i := int(slot[pp.group]) - 1
		if i < 0 {
			i = len(best)
			best = append(best, nil)
			slot[pp.group] = int32(i + 1)
		}
		of[j] = i
		if best[i] == nil || compareKeys(pp, best[i], keyOf) < 0 {
			best[i] = pp
		}
	}
	// byBest: the groups in the order of their best pod.
	byBest := make([]int, len(best))
	for i := range byBest {
		byBest[i] = i
	}
	slices.SortFunc(byBest, func(a, b int) int { return compareKeys(best[a], best[b], keyOf) })
	var groups []*candidates // from the second round on, in byBest's order
	first, at := 0, 0
	return func() *podPlan {
		if first < len(byBest) {
			first++
			return best[byBest[first-1]]
		}
		if groups == nil {
			groups = heaped(pods, of, best, byBest, keyOf)
		}
		for len(groups) > 0 {
			if at >= len(groups) {
				at = 0
			}
			g := groups[at]
			if len(g.pods) == 0 {
				groups = slices.Delete(groups, at, at+1)
				continue
			}
			at++
			return g.next()
		}
		return nil
	}
}

// heaped returns the scatter groups of ordered, but for the best pod of
// each, which the first round took, as heaps in byBest's order.
func heaped(pods []*podPlan, of []int, best []*podPlan, byBest []int, keyOf func(*podPlan) *sortKey) []*candidates {
	rank := make([]int, len(best)) // group → its place in byBest
	for r, g := range byBest {
		rank[g] = r
	}
	groups := make([]*candidates, len(best))
	for i := range groups {
		groups[i] = &candidates{keyOf: keyOf}
	}
	for j, pp := range pods {
		if g := of[j]; pp != best[g] {
			groups[rank[g]].pods = append(groups[rank[g]].pods, pp)
		}
	}
	for _, g := range groups {
		heap.Init(g)
	}
	return groups
}

// groupOf returns the scatter group of a node: its index in index, by
// the node's values of the scatter keys, or next for a new group.
func groupOf(s *projections.State, terms []projections.ScatterTerm, node string, index map[string]int, next int) int {
	g := scatterValues(s, terms, node)
	i, ok := index[g]
	if !ok {
		i = next
		index[g] = i
	}
	return i
}

// scatterValues is what tells a node's scatter group: its values of the
// scatter keys ("" for a key it lacks, or a node not seen).
func scatterValues(s *projections.State, terms []projections.ScatterTerm, node string) string {
	var vals []string
	for _, t := range terms {
		v := ""
		if n := s.Nodes[node]; n != nil && n.Node != nil {
			v = n.Node.Labels[t.Key]
		}
		vals = append(vals, v)
	}
	return strings.Join(vals, "\x00")
}

// sortKeys returns a candidate's sort key under spec, found once per
// classification (podPlan.sortKey: the spec is part of what a kept
// classification was made under).
func sortKeys(spec projections.RolloutSpec) func(*podPlan) *sortKey {
	// budgets has refused a rollout whose selectors do not parse: sels
	// then is empty and weighs nothing.
	sels, _ := prioritySelectors(spec)
	return func(pp *podPlan) *sortKey {
		if !pp.keyed {
			k := sortKey{ordinal: ordinal(pp.pod.Name)}
			if pr := spec.Strategy.Priority; pr != nil {
				for j, sel := range sels {
					if w := pr.Weights[j]; sel.Matches(pp.pod.LabelSet()) {
						k.weight += int64(w.Weight)
					}
				}
			}
			pp.sortKey, pp.keyed = k, true
		}
		return &pp.sortKey
	}
}

// sortKey is what order and ordered compare a candidate by, besides an
// order key and its name (the pod's: not copied into every
// classification).
type sortKey struct {
	weight  int64
	ordinal int
}

// compareKeys is order's comparison without an order key: highest weight
// first, then highest ordinal, as a StatefulSet updates (with a
// partition, the lowest ordinals keep the old version), then by name.
func compareKeys(a, b *podPlan, keyOf func(*podPlan) *sortKey) int {
	ka, kb := keyOf(a), keyOf(b)
	if ka.weight != kb.weight {
		return cmp.Compare(kb.weight, ka.weight)
	}
	if ka.ordinal != kb.ordinal {
		return cmp.Compare(kb.ordinal, ka.ordinal)
	}
	return strings.Compare(a.pod.Name, b.pod.Name)
}

// candidates is a heap of candidates, the first in order on top.
type candidates struct {
	keyOf func(*podPlan) *sortKey
	pods  []*podPlan
}

func (h *candidates) Len() int { return len(h.pods) }
func (h *candidates) Less(i, j int) bool {
	return compareKeys(h.pods[i], h.pods[j], h.keyOf) < 0
}
func (h *candidates) Swap(i, j int) { h.pods[i], h.pods[j] = h.pods[j], h.pods[i] }
func (h *candidates) Push(x any)    { h.pods = append(h.pods, x.(*podPlan)) }
func (h *candidates) Pop() any {
	last := h.pods[len(h.pods)-1]
	h.pods = h.pods[:len(h.pods)-1]
	return last
}

// next pops the first candidate, nil when none is left.
func (h *candidates) next() *podPlan {
	if len(h.pods) == 0 {
		return nil
	}
	return heap.Pop(h).(*podPlan)
}

// scatterGroups numbers the scatter groups of the nodes, per list of
// scatter keys: one number per distinct values of those keys
// (scatterValues). A candidate keeps its group's number (podPlan.group),
// so ordering a thousand candidates reads no node and looks nothing up
// per pod.
//
// A node's labels are read once per list of keys: node records that
// change them, or add or remove a node, make the next plan a full plan
// (projections.Touched.All), which starts a new scatterGroups and
// classifies every pod again.
type scatterGroups map[string]*termGroups // keys joined → their groups

// termGroups numbers the groups of one list of scatter keys.
type termGroups struct {
	terms  []projections.ScatterTerm
	n      int32
	ids    map[string]int32 // scatterValues → number, from 1
	byNode map[string]int32
}

// of is the groups of one list of scatter keys.
func (g scatterGroups) of(terms []projections.ScatterTerm) *termGroups {
	var key strings.Builder
	for _, t := range terms {
		key.WriteString(t.Key)
		key.WriteByte(0)
	}
	tg := g[key.String()]
	if tg == nil {
		tg = &termGroups{terms: terms, ids: map[string]int32{}, byNode: map[string]int32{}}
		g[key.String()] = tg
	}
	return tg
}

// group is the number of node's group, from 1.
func (tg *termGroups) group(s *projections.State, node string) int32 {
	if id, ok := tg.byNode[node]; ok {
		return id
	}
	vals := scatterValues(s, tg.terms, node)
	id, ok := tg.ids[vals]
	if !ok {
		tg.n++
		id = tg.n
		tg.ids[vals] = id
	}
	tg.byNode[node] = id
	return id
}
