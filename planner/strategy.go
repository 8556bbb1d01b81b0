package planner

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"rollbook.dev/rollbook/projections"
)

// prioritySelectors parses the rollout's priority selectors, in order. A
// selector the schema let through but that does not parse (an operator
// In with no values, a value that is no label value) is an error naming
// its field: the order the user asked for cannot be honoured, so the
// rollout must not go on in another one.
func prioritySelectors(spec projections.RolloutSpec) ([]labels.Selector, error) {
	pr := spec.Strategy.Priority
	if pr == nil {
		return nil, nil
	}
	sels := make([]labels.Selector, len(pr.Weights))
	for i, w := range pr.Weights {
		sel, err := metav1.LabelSelectorAsSelector(&w.Selector)
		if err != nil {
			return nil, fmt.Errorf("spec.strategy.priority.weights[%d].selector: %w", i, err)
		}
		sels[i] = sel
	}
	return sels, nil
}

// unusedScatterKeys returns the scatter keys that none of pods' nodes
// carries, in spec order. Such a key spreads nothing (every pod falls in
// the same group), which the rollout says in a condition rather than
// ignoring it in silence. Pods not scheduled yet, or on nodes not seen yet,
// tell nothing either way; with none of those, nothing is reported.
func unusedScatterKeys(s *projections.State, spec projections.RolloutSpec, pods []*projections.Pod) []string {
	keys := spec.Strategy.Scatter
	if len(keys) == 0 {
		return nil
	}
	found, left, anyNode := make([]bool, len(keys)), len(keys), false
	seen := map[string]bool{}
	for _, pod := range pods {
		if pod.Pod == nil || pod.Pod.NodeName == "" || seen[pod.Pod.NodeName] {
			continue
		}
		seen[pod.Pod.NodeName] = true
		n := s.Nodes[pod.Pod.NodeName]
		if n == nil || n.Node == nil {
			continue
		}
		anyNode = true
		for i, t := range keys {
			if _, ok := n.Node.Labels[t.Key]; ok && !found[i] {
				found[i], left = true, left-1
			}
		}
		if left == 0 {
			return nil // every key found: the usual case ends at the first node
		}
	}
	if !anyNode {
		return nil
	}
	var unused []string
	for i, t := range keys {
		if !found[i] {
			unused = append(unused, t.Key)
		}
	}
	return unused
}

// reportScatter sets ScatterIgnored: True naming the keys no node of the
// rollout's pods carries.
func (p *planning) reportScatter(rp *rolloutPlan) {
	if unused := unusedScatterKeys(p.s, rp.spec, rp.mine); len(unused) > 0 {
		rp.conds.set("ScatterIgnored", "True", "NoSuchNodeLabel", fmt.Sprintf("spec.strategy.scatter key(s) %s: no node of the rollout's pods has this label, so batches are not spread by it; label the nodes or fix the key", strings.Join(unused, ", ")))
		return
	}
	rp.conds.set("ScatterIgnored", "False", "NodeLabelsFound", "")
}
