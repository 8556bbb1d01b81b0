package planner

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestIncrementalFollowsClaims: when an older rollout lets go of pods, a
// younger one that selects them and was touched by nothing else takes
// them in the same plan. (world.plan compares the incremental planner
// with Plan at every plan; the golden scripts and the simulation reach
// this case rarely.)
func TestIncrementalFollowsClaims(t *testing.T) {
	for _, how := range []string{"selector", "delete"} {
		t.Run(how, func(t *testing.T) {
			w := newWorld(t)
			w.addFleet("web", 4, w.addNodes(1, 1), "round", "OnDelete", true, false, false,
				[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": "web"}, nil)
			spec := func(app string) []byte {
				return []byte(fmt.Sprintf(`{"target":{"selector":{"matchLabels":{"app":%q}}},"containers":[{"name":"app","image":"app:v2"}],"strategy":{"maxUnavailable":1}}`, app))
			}
			w.addRollout("a", spec("web"))
			w.tick(time.Second)
			w.addRollout("b", spec("web"))
			// Carry out status writes and events only, until there are none:
			// b then holds a plan with nothing to do, and a keeps wanting to
			// gate a pod.
			for i := 0; ; i++ {
				if i == 10 {
					t.Fatal("status writes do not settle")
				}
				did := false
				for _, a := range w.plan().Actions {
					if a.Kind == Status || a.Kind == Event {
						w.do(a, "")
						did = true
					}
				}
				if !did {
					break
				}
			}
			if how == "delete" {
				w.deleteRollout("a")
			} else {
				w.addRollout("a", spec("none"))
			}
			var gates int
			for _, a := range w.plan().Actions {
				if a.Kind == Gate && a.Rollout == testNS+"/b" {
					gates++
				}
			}
			if gates != 1 {
				t.Fatalf("rollout b gates %d pods once a let go of them, want 1 (maxUnavailable)", gates)
			}
			if w.inc.Partial == 0 {
				t.Fatal("no partial plan was compared")
			}
		})
	}
}

// stalled looks a pod's failures up only when podOfKey found the pod in
// some failure's key: the two must agree on Action.Key's shape, or a
// stalled pod would go unreported.
func TestPodOfKeyReadsActionKeys(t *testing.T) {
	for _, k := range []ActionKind{Gate, Patch, Resize, Ungate, Recreate} {
		a := Action{Kind: k, Pod: "shop/web-0", UID: "u-1", Revision: "abc123"}
		if pod, ok := podOfKey(a.Key()); !ok || pod != a.Pod {
			t.Errorf("%s: podOfKey(%q) = %q, %v; want %q", k, a.Key(), pod, ok, a.Pod)
		}
	}
	for _, a := range []Action{
		{Kind: Status, Rollout: "shop/r", RolloutUID: "u"},
		{Kind: Event, Rollout: "shop/r", Reason: "Started", Message: "m"},
		{Kind: Measure, Rollout: "shop/r", Revision: "abc", Step: 1, N: 2},
	} {
		if pod, ok := podOfKey(a.Key()); ok {
			t.Errorf("%s: podOfKey(%q) named pod %q", a.Kind, a.Key(), pod)
		}
	}
}

// TestDifferenceNamesTheFirstAction: what --cross-check-plans and replay's
// cross-check print when the planners disagree names the first differing
// action of each, or the wake-ups; the same plan prints nothing.
func TestDifferenceNamesTheFirstAction(t *testing.T) {
	gate := Action{Kind: Gate, Pod: "shop/web-1", UID: "u1", Rollout: "shop/web", Revision: "r2"}
	patch := Action{Kind: Patch, Pod: "shop/web-0", UID: "u0", Rollout: "shop/web", Revision: "r2"}
	a := Result{Actions: []Action{patch, gate}, WakeAt: 5}
	if d := Difference(a, Result{Actions: []Action{patch, gate}, WakeAt: 5}); d != "" {
		t.Fatalf("the same plan differs: %s", d)
	}
	d := Difference(a, Result{Actions: []Action{patch}, WakeAt: 5})
	if !strings.Contains(d, "action 1 of 2/1") || !strings.Contains(d, gate.String()) || !strings.Contains(d, "(nothing)") {
		t.Fatalf("a missing action: %s", d)
	}
	if d := Difference(a, Result{Actions: []Action{patch, gate}, WakeAt: 7}); !strings.Contains(d, "wake-up at 5, against 7") {
		t.Fatalf("another wake-up: %s", d)
	}
}

// TestRolloutPlannedFromItsLastPlan: two rollouts (of StatefulSets, or
// of pods a selector names), rolled to the end with a kubelet that
// restarts a few pods a round, are planned from their last plans once
// under way (delta.go), and every plan still equals Plan's (world.plan
// compares them). A pod whose patch fails is looked at again at every
// plan, and its rollout still plans from its last plan.
func TestRolloutPlannedFromItsLastPlan(t *testing.T) {
	for _, target := range []string{"workload", "selector"} {
		t.Run(target, func(t *testing.T) {
			w := newWorld(t)
			w.freshEvery = 10
			nodes := w.addNodes(6, 3)
			for _, name := range []string{"web0", "web1"} {
				f := w.addFleet(name, 40, nodes, "round", "OnDelete", true, false, false,
					[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": name}, nil)
				spec := fmt.Sprintf(`{"target":{"selector":{"matchLabels":{"app":%q}}},"containers":[{"name":"app","image":"app:v2"}],"strategy":{"maxUnavailable":4,"gracePeriodSeconds":0}}`, name)
				if target == "workload" {
					newImage(w, f)
					spec = fmt.Sprintf(`{"target":{"workloadRef":{"apiVersion":"apps/v1","kind":"StatefulSet","name":%q}},"strategy":{"maxUnavailable":4,"gracePeriodSeconds":0,"scatter":[{"key":%q}]}}`, name, zoneLabel)
				}
				w.addRollout("r-"+name, []byte(spec))
			}
			failed := false
			for round := 0; ; round++ {
				if round == 400 {
					t.Fatal("the rollouts did not finish in 400 rounds")
				}
				w.tick(time.Second)
				for _, a := range w.plan().Actions {
					fail := ""
					if a.Kind == Patch && !failed {
						fail, failed = "conflict", true
					}
					w.do(a, fail)
				}
				w.flush()
				w.syncFleets()
				// A few pods a round: most plans see a handful of changed pods.
				var names []string
				for _, p := range w.pods {
					names = append(names, p.Name)
				}
				sort.Strings(names)
				from := round * 5 % len(names)
				w.kubelet(names[from:min(from+5, len(names))]...)
				done := true
				for _, name := range []string{"r-web0", "r-web1"} {
					if st, _ := w.rolloutStatus(name); st.Phase != projections.PhaseSucceeded {
						done = false
					}
				}
				if done {
					break
				}
			}
			if !failed {
				t.Fatal("no patch was failed on purpose")
			}
			t.Logf("%d full plans, %d partial; %d rollouts planned again, %d of them from their last plan", w.inc.Full, w.inc.Partial, w.inc.Replanned, w.inc.FromLast)
			if w.inc.FromLast*10 < w.inc.Replanned*8 {
				t.Fatalf("only %d of %d rollouts planned again were planned from their last plan", w.inc.FromLast, w.inc.Replanned)
			}
		})
	}
}

// TestPlanFromLastFallsBack: a selector rollout all of whose pods are
// replaced, between two plans, by pods without the container it names
// (the pods the rollout selects are the same keys).
// The plan from the last one finds that only once it has put the changed
// pods in (in the last plan's slices, in place); it then falls back to
// selecting afresh, and plans as Plan does (world.plan compares): the
// rollout is Invalid, UnknownContainer.
func TestPlanFromLastFallsBack(t *testing.T) {
	w := newWorld(t)
	nodes := w.addNodes(3, 1)
	f := w.addFleet("web", 4, nodes, "round", "OnDelete", true, false, false,
		[]containerSpec{{name: "app", image: "app:v1"}, {name: "side", image: "side:v1"}}, map[string]string{"app": "web"}, nil)
	w.addRollout("r", []byte(`{"target":{"selector":{"matchLabels":{"app":"web"}}},"containers":[{"name":"side","image":"side:v2"}],"strategy":{"maxUnavailable":1,"gracePeriodSeconds":0}}`))
	for range 4 {
		w.round()
	}
	if w.inc.FromLast == 0 {
		t.Fatal("no plan was made from the last one")
	}
	// Each pod replaced, under its name, by one without the sidecar (as
	// if created by hand: the StatefulSet's revisions do not change, which
	// would make the plan start afresh anyway).
	for i := range 4 {
		k := fmt.Sprintf("%s/web-%d", testNS, i)
		w.deletePod(k, false)
		p := w.newPod(f, i)
		p.Pod.Containers = slices.DeleteFunc(p.Pod.Containers, func(c journal.Container) bool { return c.Name == "side" })
		w.pods[k] = p
		w.write(p)
	}
	fromLast := w.inc.FromLast
	w.round()
	if w.inc.FromLast != fromLast {
		t.Fatal("planned from the last plan although no pod has the container the rollout names")
	}
	w.round()
	st, _ := w.rolloutStatus("r")
	for _, c := range st.Conditions {
		if c.Type == "Invalid" && c.Status == "True" && c.Reason == "UnknownContainer" {
			return
		}
	}
	t.Fatalf("the rollout is not Invalid, UnknownContainer: %+v", st.Conditions)
}

// TestPodsShareTheirImageChanges: the pods a rollout keeps classified,
// all of one revision and changing the same image, hold one list of
// image changes between them (a rollout under way keeps every pod's
// classification: one list each would grow with the fleet). A pod that
// changes its image differently holds its own.
func TestPodsShareTheirImageChanges(t *testing.T) {
	for _, target := range []string{"workload", "selector"} {
		t.Run(target, func(t *testing.T) {
			w := newWorld(t)
			nodes := w.addNodes(3, 1)
			f := w.addFleet("web", 12, nodes, "round", "OnDelete", true, false, false,
				[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": "web"}, nil)
			spec := `{"target":{"selector":{"matchLabels":{"app":"web"}}},"containers":[{"name":"app","image":"app:v2"}],"strategy":{"maxUnavailable":2}}`
			if target == "workload" {
				newImage(w, f)
				spec = `{"target":{"workloadRef":{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web"}},"strategy":{"maxUnavailable":2}}`
			}
			// One pod already runs another image: its change is its own.
			odd := w.pods[testNS+"/web-3"]
			odd.Pod.Containers[0].Image = "app:v0"
			w.write(odd)
			w.addRollout("r", []byte(spec))
			w.plan()
			u := w.inc.units[testNS+"/r"]
			if u == nil || u.kept == nil {
				t.Fatal("the rollout keeps no classifications")
			}
			var first *ContainerChange
			shared := 0
			for i, pod := range u.kept.pods {
				key, pp := pod.Key(), u.kept.plans[i]
				if pp == nil || len(pp.imageChanges()) != 1 {
					continue
				}
				c := &pp.imageChanges()[0]
				switch {
				case key == testNS+"/web-3":
					if c.From != "app:v0" {
						t.Fatalf("web-3 changes %s, not app:v0", c.From)
					}
				case first == nil:
					first = c
				case c != first:
					t.Fatalf("%s holds its own list of image changes: %+v", key, *c)
				default:
					shared++
				}
			}
			if shared < 10 {
				t.Fatalf("%d pods share the first pod's image changes, want 10", shared)
			}
		})
	}
}

// TestFinishedRolloutPlannedFromItsLastPlan: a rollout that is over stays
// (a workload's rolls each of its revisions), and a record about any of
// its pods plans it again. It is planned from its last plan, looking only
// at the pods that changed, and keeps no classification of a pod that is
// done (resting); a pod that needs it again is planned as Plan plans it
// (world.plan compares every plan).
func TestFinishedRolloutPlannedFromItsLastPlan(t *testing.T) {
	for _, target := range []string{"workload", "selector"} {
		t.Run(target, func(t *testing.T) {
			w := newWorld(t)
			nodes := w.addNodes(3, 1)
			f := w.addFleet("web", 20, nodes, "round", "OnDelete", true, false, false,
				[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": "web"}, nil)
			spec := `{"target":{"selector":{"matchLabels":{"app":"web"}}},"containers":[{"name":"app","image":"app:v2"}],"strategy":{"maxUnavailable":5,"gracePeriodSeconds":0}}`
			if target == "workload" {
				newImage(w, f)
				spec = `{"target":{"workloadRef":{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web"}},"strategy":{"maxUnavailable":5,"gracePeriodSeconds":0}}`
			}
			w.addRollout("r", []byte(spec))
			for round := 0; ; round++ {
				if round == 100 {
					t.Fatal("the rollout did not finish in 100 rounds")
				}
				w.round()
				if st, _ := w.rolloutStatus("r"); st.Phase == projections.PhaseSucceeded {
					break
				}
			}
			w.round() // the plan that reads its status back as Succeeded
			u := w.inc.units[testNS+"/r"]
			if u == nil || !u.simple {
				t.Fatal("the finished rollout keeps no plan to start the next one from")
			}
			held := 0
			for _, pp := range u.plans {
				if pp != resting {
					held++
				}
			}
			if held != 0 {
				t.Fatalf("the finished rollout keeps %d classifications of done pods", held)
			}

			// A pod's status changes (its container restarts): planned
			// from the last plan, and that pod only is classified.
			fromLast := w.inc.FromLast
			p := w.pods[testNS+"/web-7"]
			p.Pod.Containers[0].RestartCount++
			w.write(p)
			w.round()
			if w.inc.FromLast != fromLast+1 {
				t.Fatalf("a finished rollout touched by one pod's status was planned afresh (%d plans from the last, want %d)", w.inc.FromLast, fromLast+1)
			}
			if st, _ := w.rolloutStatus("r"); st.Phase != projections.PhaseSucceeded {
				t.Fatalf("the rollout is %s after a restart, want Succeeded", st.Phase)
			}

			// A pod that runs the old image again (set by hand) is the
			// rollout's to update again, as Plan says.
			p = w.pods[testNS+"/web-3"]
			p.Pod.Containers[0].Image = "app:v1"
			w.write(p)
			for range 10 {
				w.round()
			}
			if st, _ := w.rolloutStatus("r"); st.Phase != projections.PhaseSucceeded || w.pods[testNS+"/web-3"].Pod.Containers[0].Image != "app:v2" {
				t.Fatalf("after web-3 went back to app:v1 the rollout is %s and web-3 runs %s", st.Phase, w.pods[testNS+"/web-3"].Pod.Containers[0].Image)
			}
		})
	}
}

// round is a second of the world: a plan, every action of it carried out,
// the watch caught up, the workloads' controllers and the kubelet run.
func (w *world) round() {
	w.tick(time.Second)
	for _, a := range w.plan().Actions {
		w.do(a, "")
	}
	w.flush()
	w.syncFleets()
	w.kubelet()
}
