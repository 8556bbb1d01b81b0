package planner

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/projections"
)

// began is where a pod's update began: the batch (the count of plan rounds
// that began updating pods, up to the one that began this one), the
// rollout's step then, and the first action.
type began struct {
	batch, step int
	action      string
}

// previewCase is a fleet, what changes in it, and a rollout of the change.
type previewCase struct {
	name  string
	setup func(w *world)
	spec  string // YAML
}

func web(gate bool, cs ...containerSpec) func(w *world) *fleet {
	return func(w *world) *fleet {
		if len(cs) == 0 {
			cs = []containerSpec{{name: "app", image: "app:v1"}}
		}
		return w.addFleet("web", 6, w.addNodes(3, 3), "round", "OnDelete", gate, false, false, cs, map[string]string{"app": "web"}, nil)
	}
}

const workloadTarget = "target: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: web}}\n"

var previewCases = []previewCase{
	{name: "maxUnavailable 2", setup: func(w *world) { newImage(w, web(true)(w)) },
		spec: workloadTarget + "strategy: {maxUnavailable: 2}"},
	{name: "maxUnavailable 50% and a grace period", setup: func(w *world) { newImage(w, web(true)(w)) },
		spec: workloadTarget + "strategy: {maxUnavailable: '50%', gracePeriodSeconds: 5}"},
	{name: "partition", setup: func(w *world) { newImage(w, web(true)(w)) },
		spec: workloadTarget + "strategy: {partition: 2}"},
	{name: "steps with pauses", setup: func(w *world) { newImage(w, web(true)(w)) },
		spec: workloadTarget + "strategy:\n  maxUnavailable: 2\n  steps:\n  - {percent: 34, pause: {}}\n  - {percent: 67, pauseSeconds: 60}\n  - {percent: 100}"},
	{name: "priority", setup: func(w *world) {
		f := web(true)(w)
		for _, n := range []string{"web-1", "web-4"} {
			p := w.pods[testNS+"/"+n]
			p.Labels["tier"] = "canary"
			w.write(p)
		}
		newImage(w, f)
	}, spec: workloadTarget + "strategy: {maxUnavailable: 2, priority: {weights: [{weight: 100, selector: {matchLabels: {tier: canary}}}]}}"},
	{name: "scatter", setup: func(w *world) {
		f := w.addFleet("web", 6, w.addNodes(3, 3), "block", "OnDelete", true, false, false,
			[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": "web"}, nil)
		newImage(w, f)
	}, spec: workloadTarget + "strategy: {maxUnavailable: 3, scatter: [{key: topology.kubernetes.io/zone}]}"},
	{name: "recreate fallback", setup: func(w *world) {
		f := web(true, containerSpec{name: "app", image: "app:v1", env: "a"})(w)
		cs := f.template()
		cs[0].image, cs[0].env = "app:v2", "b"
		w.setTemplate(f, cs, "", f.tmpl.Labels, f.tmpl.Annotations)
		w.write(f.obs)
	}, spec: workloadTarget + "strategy: {maxUnavailable: 2}"},
	{name: "a pod already updated", setup: func(w *world) {
		newImage(w, web(true)(w))
		w.deletePod(testNS+"/web-5", true) // its StatefulSet recreates it from the new template
		w.kubelet()
	}, spec: workloadTarget + "strategy: {maxUnavailable: 2}"},
	{name: "resize", setup: func(w *world) {
		f := web(true, containerSpec{name: "app", image: "app:v1", requests: map[string]string{"cpu": "100m"}})(w)
		cs := f.template()
		cs[0].requests = map[string]string{"cpu": "200m"}
		w.setTemplate(f, cs, "", f.tmpl.Labels, f.tmpl.Annotations)
		w.write(f.obs)
	}, spec: workloadTarget + "strategy: {maxUnavailable: 2}"},
	{name: "lifecycle hooks, answered at once", setup: func(w *world) { w.hookCtl = true; newImage(w, web(true)(w)) },
		spec: workloadTarget + "strategy: {maxUnavailable: 2}\nlifecycle:\n  preUpdate: {label: {key: example.com/drained, value: 'true'}}\n  postUpdate: {condition: example.com/Rejoined}"},
	{name: "no readiness gate: patched at once", setup: func(w *world) { web(false)(w) },
		spec: "target: {selector: {matchLabels: {app: web}}}\ncontainers: [{name: app, image: app:v2}]\nstrategy: {maxUnavailable: 4}"},
}

// TestPreviewAgreesWithTheLoop holds Preview to what it promises: the
// batches it predicts are the batches the controller's loop makes when the
// rollout really runs in a world where nothing takes time (plan, carry
// out, the kubelets act, time moves to the next wake-up, and a user
// approves each `pause: {}`).
func TestPreviewAgreesWithTheLoop(t *testing.T) {
	for _, c := range previewCases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			c.setup(w)
			spec := jsonSpec(t, c.spec)
			w.addRollout("r1", spec)
			pv := Preview(w.state, testNS+"/r1")
			if pv.Problem != "" {
				t.Fatalf("Preview: %s", pv.Problem)
			}
			want := map[string]began{}
			for _, p := range pv.Pods {
				if p.Batch > 0 {
					want[p.Pod] = began{p.Batch, p.Step, p.Action}
				}
			}
			got := runRollout(t, w, "r1", spec)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Preview and the loop disagree:\npreview: %s\nloop:    %s\n%s", formatBegan(want), formatBegan(got), formatPreview(pv))
			}
			if len(got) == 0 {
				t.Errorf("the rollout updated no pod: the case tests nothing")
			}
		})
	}
}

// runRollout runs the rollout to its end as the controller's loop would,
// and says where each pod's update began. The kubelets act as soon as the
// writes of a plan have landed: Preview assumes nothing takes time, and
// when a kubelet is slower than the planner, pods that would have started
// one after the other start together.
func runRollout(t *testing.T, w *world, name string, spec []byte) map[string]began {
	t.Helper()
	key := testNS + "/" + name
	got := map[string]began{}
	batches := 0
	for range 1000 {
		res := w.plan()
		st, _ := w.rolloutStatus(name)
		for _, a := range res.Actions {
			if a.Kind == Status && a.Rollout == key {
				st = *a.Status
			}
		}
		round := 0
		for _, a := range res.Actions {
			if a.Rollout != key || (a.Kind != Gate && a.Kind != Patch && a.Kind != Recreate) {
				continue
			}
			if _, ok := got[a.Pod]; ok {
				continue
			}
			if round == 0 {
				batches++
				round = batches
			}
			got[a.Pod] = began{round, int(st.CurrentStep), string(a.Kind)}
		}
		for _, a := range res.Actions {
			if class := w.do(a, ""); class != "" {
				t.Fatalf("%s failed: %s", a, class)
			}
		}
		if len(w.kubelet()) > 0 || len(res.Actions) > 0 {
			continue
		}
		st, _ = w.rolloutStatus(name)
		if c := condition(st.Conditions, "Paused"); st.Phase == projections.PhasePaused && c != nil && c.Reason == "StepPause" {
			var s map[string]any
			if err := json.Unmarshal(spec, &s); err != nil {
				t.Fatal(err)
			}
			steps := s["strategy"].(map[string]any)["steps"].([]any)
			if _, ok := steps[st.CurrentStep].(map[string]any)["pause"]; ok {
				approved, _ := s["approvedSteps"].(float64)
				s["approvedSteps"] = approved + 1
				spec, _ = json.Marshal(s)
				w.addRollout(name, spec)
				continue
			}
		}
		if res.WakeAt == 0 {
			if st.Phase != projections.PhaseSucceeded {
				t.Fatalf("the rollout ends %s, not Succeeded", st.Phase)
			}
			return got
		}
		w.tick(time.Duration(res.WakeAt - w.now))
	}
	t.Fatal("the rollout is still running after 1000 rounds")
	return nil
}

// TestPreviewWritesNothing: Preview leaves the state as folded from the
// journal, so planning after it gives what planning before it gave.
func TestPreviewWritesNothing(t *testing.T) {
	for _, c := range previewCases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			c.setup(w)
			w.addRollout("r1", jsonSpec(t, c.spec))
			w.do(w.plan().Actions[0], "") // a state with a status and a start behind it
			before := Plan(w.state)
			Preview(w.state, testNS+"/r1")
			if after := Plan(w.state); !reflect.DeepEqual(before, after) {
				t.Errorf("planning after Preview differs:\n%s\n----\n%s", formatResult(before, w.now), formatResult(after, w.now))
			}
			fresh := projections.New()
			for _, r := range w.records {
				if err := fresh.Apply(r); err != nil {
					t.Fatal(err)
				}
			}
			// What the world's state tracked for its incremental planner
			// is not the state.
			if !reflect.DeepEqual(fresh.Detached(), w.state.Detached()) {
				t.Errorf("Preview changed the state it was given")
			}
		})
	}
}

// TestPreviewReads is what `rollbook plan` shows for a small fleet: the
// batches, what holds the rollout between them, and why a pod is in none.
func TestPreviewReads(t *testing.T) {
	w := newWorld(t)
	f := w.addFleet("web", 5, w.addNodes(2, 2), "round", "OnDelete", true, false, false,
		[]containerSpec{{name: "app", image: "app:v1"}}, map[string]string{"app": "web"}, nil)
	newImage(w, f)
	w.deletePod(testNS+"/web-4", true)
	w.kubelet()
	w.addRollout("r1", jsonSpec(t, workloadTarget+"strategy:\n  maxUnavailable: 2\n  partition: 1\n  gracePeriodSeconds: 5\n  steps:\n  - {percent: 40, pause: {}}\n  - {percent: 60, pauseSeconds: 30}\n  - {percent: 100}"))
	got := formatPreview(Preview(w.state, testNS+"/r1"))
	want := `revision 0114baa0fb, 5 pods, maxUnavailable 2, partition 1, already updated 1
batch 1 step 0 shop/web-3 node-1 gate
batch 2 step 1 shop/web-2 node-0 gate: after step 0 (40%) the rollout pauses until spec.approvedSteps is raised to 1
batch 3 step 2 shop/web-1 node-1 gate: after step 1 (60%) the rollout pauses 30s
batch - step 0 shop/web-0 node-0 idle: stays on its current version: partition keeps 1 pods
batch - step 0 shop/web-4 node-0 done: already at the target
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestPreviewSaysWhyNot: a pod an older rollout drives, a change that
// cannot be made in place with fallback Never, a spec the planner refuses.
func TestPreviewSaysWhyNot(t *testing.T) {
	w := newWorld(t)
	f := web(true, containerSpec{name: "app", image: "app:v1", env: "a"})(w)
	w.addRollout("older", jsonSpec(t, "target: {selector: {matchLabels: {app: web}}}\ncontainers: [{name: app, image: app:v3}]\n"+
		"strategy: {partition: 5}"))
	cs := f.template()
	cs[0].env = "b"
	w.setTemplate(f, cs, "", f.tmpl.Labels, f.tmpl.Annotations)
	w.write(f.obs)
	w.tick(time.Second) // the rollouts' creation times differ
	w.addRollout("r1", jsonSpec(t, workloadTarget+"strategy: {fallback: Never}"))
	pv := Preview(w.state, testNS+"/r1")
	if pv.Problem != "" {
		t.Fatalf("Preview: %s", pv.Problem)
	}
	if len(pv.Conflicts) != 6 {
		t.Errorf("conflicts %v, want all 6 pods: the older rollout claims them", pv.Conflicts)
	}

	w = newWorld(t)
	f = web(true, containerSpec{name: "app", image: "app:v1", env: "a"})(w)
	cs = f.template()
	cs[0].env = "b"
	w.setTemplate(f, cs, "", f.tmpl.Labels, f.tmpl.Annotations)
	w.write(f.obs)
	w.addRollout("r1", jsonSpec(t, workloadTarget+"strategy: {fallback: Never}"))
	pv = Preview(w.state, testNS+"/r1")
	for _, p := range pv.Pods {
		if p.Batch != 0 || !strings.Contains(p.Why, "cannot be updated in place") || !strings.Contains(p.Why, "spec.containers[app].env") {
			t.Errorf("%s: batch %d, %q; want no batch, and the field that cannot change in place", p.Pod, p.Batch, p.Why)
		}
	}

	w.addRollout("r1", jsonSpec(t, workloadTarget+"paused: true"))
	pv = Preview(w.state, testNS+"/r1")
	if len(pv.Pods) == 0 || pv.Pods[0].Batch != 1 || !strings.Contains(pv.Pods[0].Why, "once spec.paused is false") {
		t.Errorf("a paused rollout: %+v; want its batches as once unpaused, said so on the first", pv.Pods)
	}

	w.addRollout("r1", jsonSpec(t, workloadTarget+"strategy: {maxUnavailable: 'ten'}"))
	if pv := Preview(w.state, testNS+"/r1"); !strings.Contains(pv.Problem, "maxUnavailable") {
		t.Errorf("problem %q, want it to name spec.strategy.maxUnavailable", pv.Problem)
	}
}

func jsonSpec(t *testing.T, y string) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return b
}

func formatBegan(m map[string]began) string {
	var parts []string
	for _, k := range keysSorted(m) {
		b := m[k]
		parts = append(parts, fmt.Sprintf("%s:%d/%d/%s", k, b.batch, b.step, b.action))
	}
	return strings.Join(parts, " ")
}

func formatPreview(pv PreviewResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision %s, %d pods, maxUnavailable %d, partition %d, already updated %d\n", pv.Revision, pv.Replicas, pv.MaxUnavailable, pv.Partition, pv.AlreadyUpdated)
	for _, p := range pv.Pods {
		batch := "-"
		if p.Batch > 0 {
			batch = fmt.Sprint(p.Batch)
		}
		what := p.Action
		if what == "" {
			what = p.Stage
		}
		if p.Why != "" {
			what += ": " + p.Why
		}
		fmt.Fprintf(&b, "batch %s step %d %s %s %s\n", batch, p.Step, p.Pod, p.Node, what)
	}
	return b.String()
}
