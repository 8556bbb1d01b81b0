package planner

import (
	"testing"
	"time"
)

func TestZZTime(t *testing.T) {
	for _, mu := range []string{"'10%'", "1"} {
		w := newWorld(t)
		f := w.addFleet("web", 1000, w.addNodes(30, 3), "round", "OnDelete", true, false, false,
			[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": "web"}, nil)
		newImage(w, f)
		w.addRollout("r1", jsonSpec(t, workloadTarget+"strategy: {maxUnavailable: "+mu+", gracePeriodSeconds: 5}"))
		start := time.Now()
		pv := Preview(w.state, testNS+"/r1")
		last := pv.Pods[len(pv.Pods)-1]
		t.Logf("maxUnavailable %s: %v, last batch %d %s %s", mu, time.Since(start), last.Batch, last.Pod, last.Why)
	}
}
