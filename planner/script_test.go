package planner

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/datadriven"
	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestScripts runs the golden scripts in testdata/. Each file is a story
// told to the test world; `go test ./planner -run TestScripts -rewrite`
// regenerates the expected output, and a diff is committed only when it is
// understood. Commands:
//
//	fleet name=web replicas=6 zones=3 [nodes=N] [spread=round|block] image=app:v1
//	      [sidecar=log:v1] [gate=true|false] [cond=none] [strategy=OnDelete]
//	      [cpu=.. mem=.. limcpu=.. limmem=..]
//	                        a StatefulSet and its pods, running and ready
//	      [labels=(k:v,..)] [annotations=(k:v,..)] template metadata
//	      [admission=true]  pods get what admission adds (zone label, injected sidecar and annotation)
//	forget-revision rev=web-r1  the ControllerRevision is deleted
//	metadata                each pod's labels and annotation keys
//	rename pod=web-0 [container=app]  a new containerID without a restart
//	template name=web [image=..] [sidecar=..] [env=..] [podspec=..] [cpu=.. ...]
//	      [labels=(k:v,k-)] [annotations=(k:v,k-)] [restart=<time>]
//	                        a new pod template: a new update revision and its ControllerRevision
//	rollout name=r1         create or update a rollout; input: its spec (YAML or JSON)
//	delete-rollout name=r1
//	plan                    the actions, canonical form, and the next wake-up
//	intend                  plan and journal the intents only (the writes are in flight)
//	complete                carry out the intents in flight
//	restart                 the controller dies: intents in flight are journaled abandoned
//	unschedule pod=web-1    the pod is pending, not scheduled
//	actuate [fail=conflict|gone|invalid|throttled pods=(web-1,...) kinds=(gate,...)]
//	                        plan, then carry out every action (failing the chosen ones)
//	kubelet [pods=(web-1,...)]  every kubelet syncs its pods (or only those) once
//	tick 5s                 time passes
//	run [rounds=N]          plan, actuate, kubelet, tick to the wake-up, until nothing changes
//	status r1               the rollout's status as written
//	pods [ids=true]         the pods as the apiserver has them
//	label pod=web-1 k=v     set a pod label
//	node-label node=node-1 k=v  set a node label
//	condition pod=web-1 type=example.com/Drained [status=True]  set a pod condition (a hook controller's release)
//	hookctl on|off          a hook controller releases every marked pod at each kubelet sync
//	delete-pod pod=web-1 [recreate=false]  delete a pod (its StatefulSet recreates it, at once or at the next kubelet)
//	sick pod=web-1 [on=false]  the kubelet keeps the pod's containers unready
//	pullfail pod=web-1 [on=false]  no new image pulls on the pod's node
//	imageid image=.. id=..  the registry resolves image to id
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		w := newWorld(t)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			w.tb = t
			return w.command(t, d)
		})
	})
}

// editMetadata applies "k:v" (set) and "k-" (remove) edits to m.
func editMetadata(m map[string]string, edits []string) {
	for _, e := range edits {
		if k, v, ok := strings.Cut(e, ":"); ok {
			m[k] = v
		} else {
			delete(m, strings.TrimSuffix(e, "-"))
		}
	}
}

func argOr(d *datadriven.TestData, key, def string) string {
	if a, ok := d.Arg(key); ok && len(a.Vals) > 0 {
		return a.Vals[0]
	}
	return def
}

func argList(d *datadriven.TestData, key string) []string {
	if a, ok := d.Arg(key); ok {
		return a.Vals
	}
	return nil
}

func argInt(t *testing.T, d *datadriven.TestData, key string, def int) int {
	s := argOr(d, key, "")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		d.Fatalf(t, "%s=%q: %v", key, s, err)
	}
	return n
}

// resources reads cpu/mem/limcpu/limmem into requests and limits.
func resources(d *datadriven.TestData, req, lim map[string]string) (map[string]string, map[string]string) {
	set := func(m map[string]string, key, arg string) map[string]string {
		if v := argOr(d, arg, ""); v != "" {
			if m == nil {
				m = map[string]string{}
			}
			m[key] = v
		}
		return m
	}
	req = set(set(req, "cpu", "cpu"), "memory", "mem")
	lim = set(set(lim, "cpu", "limcpu"), "memory", "limmem")
	return req, lim
}

func (w *world) command(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "fleet":
		zones := argInt(t, d, "zones", 1)
		replicas := argInt(t, d, "replicas", 3)
		nodes := w.addNodes(argInt(t, d, "nodes", zones), zones)
		req, lim := resources(d, nil, nil)
		cs := []containerSpec{{name: "app", image: argOr(d, "image", "app:v1"), env: argOr(d, "env", ""), requests: req, limits: lim}}
		if s := argOr(d, "sidecar", ""); s != "" {
			cs = append(cs, containerSpec{name: "log", image: s})
		}
		name := argOr(d, "name", "web")
		labels, annotations := map[string]string{"app": name}, map[string]string{}
		editMetadata(labels, argList(d, "labels"))
		editMetadata(annotations, argList(d, "annotations"))
		w.addFleet(name, replicas, nodes, argOr(d, "spread", "round"), argOr(d, "strategy", "OnDelete"),
			argOr(d, "gate", "true") == "true", argOr(d, "cond", "") == "none", argOr(d, "admission", "false") == "true", cs, labels, annotations)
		return w.podsTable(false)

	case "rename":
		// A status written from an older snapshot: the container gets a new
		// ID although it never restarted (same image, same restart count).
		p := w.pods[testNS+"/"+argOr(d, "pod", "")]
		if p == nil {
			d.Fatalf(t, "no pod %q", argOr(d, "pod", ""))
		}
		c := &p.Pod.Containers[slices.IndexFunc(p.Pod.Containers, func(c journal.Container) bool { return c.Name == argOr(d, "container", "app") })]
		w.cids++
		c.ContainerID = fmt.Sprintf("containerd://c%04d", w.cids)
		w.write(p)
		return "ok"

	case "metadata":
		// Each pod's labels (the revision label aside) and annotation keys.
		var b strings.Builder
		for _, k := range keysSorted(w.pods) {
			p := w.pods[k]
			var ls []string
			for _, l := range keysSorted(p.Labels) {
				if l != RevisionLabel {
					ls = append(ls, l+"="+p.Labels[l])
				}
			}
			fmt.Fprintf(&b, "%s: labels %s annotations %v\n", p.Name, strings.Join(ls, ","), p.AnnotationKeys)
		}
		return b.String()

	case "forget-revision":
		// The ControllerRevision is gone (pruned past revisionHistoryLimit).
		w.forgetRevision(argOr(d, "rev", ""))
		return "ok"

	case "template":
		f := w.sets[argOr(d, "name", "web")]
		if f == nil {
			d.Fatalf(t, "no fleet %q", argOr(d, "name", "web"))
		}
		cs := f.template()
		cs[0].image = argOr(d, "image", cs[0].image)
		cs[0].env = argOr(d, "env", "")
		cs[0].requests, cs[0].limits = resources(d, cs[0].requests, cs[0].limits)
		if s := argOr(d, "sidecar", ""); s != "" {
			cs[1].image = s
		}
		oldRev := f.obs.Workload.UpdateRevision
		labels, annotations := maps.Clone(f.tmpl.Labels), maps.Clone(f.tmpl.Annotations)
		editMetadata(labels, argList(d, "labels"))
		if annotations == nil {
			annotations = map[string]string{}
		}
		editMetadata(annotations, argList(d, "annotations"))
		if at := argOr(d, "restart", ""); at != "" {
			annotations[RestartedAtAnnotation] = at
		}
		w.setTemplate(f, cs, argOr(d, "podspec", ""), labels, annotations)
		if argOr(d, "lag", "false") == "true" {
			// The spec is written; the workload's controller has not yet
			// observed it: old update revision, old observedGeneration.
			f.lagged = f.obs.Workload.UpdateRevision
			f.obs.Workload.UpdateRevision = oldRev
			f.obs.Workload.ObservedGeneration = f.obs.Generation - 1
			w.write(f.obs)
			return fmt.Sprintf("%s: generation %d, observed %d, update revision still %s", f.obs.Name, f.obs.Generation, f.obs.Workload.ObservedGeneration, oldRev)
		}
		w.write(f.obs)
		return fmt.Sprintf("%s: update revision %s", f.obs.Name, f.obs.Workload.UpdateRevision)

	case "observe-template":
		// The workload's controller catches up with a lagged template.
		f := w.sets[argOr(d, "name", "web")]
		if f == nil || f.lagged == "" {
			d.Fatalf(t, "no lagged template for %q", argOr(d, "name", "web"))
		}
		f.obs.Workload.UpdateRevision, f.lagged = f.lagged, ""
		f.obs.Workload.ObservedGeneration = f.obs.Generation
		w.write(f.obs)
		return fmt.Sprintf("%s: update revision %s", f.obs.Name, f.obs.Workload.UpdateRevision)

	case "rollout":
		spec, err := yaml.YAMLToJSON([]byte(d.Input))
		if err != nil {
			d.Fatalf(t, "spec: %v", err)
		}
		w.addRollout(argOr(d, "name", "r1"), spec)
		return "ok"

	case "delete-rollout":
		w.deleteRollout(argOr(d, "name", "r1"))
		return "ok"

	case "plan":
		return formatResult(w.plan(), w.now)

	case "actuate":
		res := w.plan()
		failClass := argOr(d, "fail", "")
		pods, kinds := argList(d, "pods"), argList(d, "kinds")
		var b strings.Builder
		for _, a := range res.Actions {
			class := ""
			if failClass != "" && matches(a, pods, kinds) {
				class = failClass
			}
			if got := w.do(a, class); got != "" {
				fmt.Fprintf(&b, "FAILED %s: %s\n", got, a)
			} else {
				fmt.Fprintf(&b, "%s\n", a)
			}
		}
		if b.Len() == 0 {
			return "nothing to do"
		}
		return b.String()

	case "intend":
		// The actuator has journaled its intents and not yet their outcomes.
		res := w.plan()
		var b strings.Builder
		for _, a := range res.Actions {
			w.intend(a)
			w.held = append(w.held, a)
			fmt.Fprintf(&b, "%s\n", a)
		}
		if b.Len() == 0 {
			return "nothing to do"
		}
		return b.String()

	case "complete":
		var b strings.Builder
		for _, a := range w.held {
			rv, class := w.perform(a)
			if class != "" {
				w.fail(a, class)
				fmt.Fprintf(&b, "FAILED %s: %s\n", class, a)
				continue
			}
			w.succeed(a, rv)
			w.flush()
			w.syncFleets()
			fmt.Fprintf(&b, "%s\n", a)
		}
		w.held = nil
		return b.String()

	case "restart":
		// The controller died with intents in flight; the new one journals
		// them as abandoned (the writes did not land).
		var b strings.Builder
		for _, a := range w.held {
			f := w.fact(a)
			f.Class, f.Error = journal.ClassAbandoned, "controller restarted"
			w.emit(journal.KindActionFailed, a.Key(), f)
			fmt.Fprintf(&b, "abandoned %s\n", a)
		}
		w.held = nil
		return b.String()

	case "unschedule":
		p := w.pods[testNS+"/"+argOr(d, "pod", "")]
		p.Pod.NodeName, p.Pod.Phase = "", "Pending"
		for i := range p.Pod.Containers {
			c := &p.Pod.Containers[i]
			c.Ready, c.State = false, "waiting:ContainerCreating"
		}
		w.updateReady(p)
		w.write(p)
		return "ok"

	case "kubelet":
		changed := w.kubelet(argList(d, "pods")...)
		if len(changed) == 0 {
			return "no change"
		}
		return "changed: " + strings.Join(changed, " ")

	case "tick":
		dur, err := time.ParseDuration(d.CmdArgs[0].Key)
		if err != nil {
			d.Fatalf(t, "tick: %v", err)
		}
		w.tick(dur)
		return fmt.Sprintf("now +%s", time.Duration(w.now-epoch))

	case "run":
		return w.run(argInt(t, d, "rounds", 200))

	case "status":
		return w.statusText(d.CmdArgs[0].Key)

	case "pods":
		return w.podsTable(argOr(d, "ids", "") == "true")

	case "label":
		p := w.pods[testNS+"/"+argOr(d, "pod", "")]
		if p == nil {
			d.Fatalf(t, "no pod %q", argOr(d, "pod", ""))
		}
		for _, a := range d.CmdArgs {
			if a.Key != "pod" {
				p.Labels[a.Key] = a.Vals[0]
			}
		}
		w.write(p)
		return "ok"

	case "measure":
		// measure check=NAME verdicts=(Pass:0.01,Fail:0.2,Error:timeout):
		// what the check's next measurements find.
		if w.measures == nil {
			w.measures = map[string][]string{}
		}
		name := argOr(d, "check", "")
		w.measures[name] = append(w.measures[name], argList(d, "verdicts")...)
		return "ok"

	case "node-label":
		n := w.nodes[argOr(d, "node", "")]
		if n == nil {
			d.Fatalf(t, "no node %q", argOr(d, "node", ""))
		}
		for _, a := range d.CmdArgs {
			if a.Key != "node" {
				n.Node.Labels[a.Key] = a.Vals[0]
			}
		}
		w.write(n)
		return "ok"

	case "hookctl":
		w.hookCtl = d.CmdArgs[0].Key == "on"
		return "ok"

	case "condition":
		p := w.pods[testNS+"/"+argOr(d, "pod", "")]
		if p == nil {
			d.Fatalf(t, "no pod %q", argOr(d, "pod", ""))
		}
		setCondition(p.Pod, argOr(d, "type", ""), argOr(d, "status", "True"), "HookDone", "", w.now)
		w.write(p)
		return "ok"

	case "delete-pod":
		k := testNS + "/" + argOr(d, "pod", "")
		if w.pods[k] == nil {
			d.Fatalf(t, "no pod %q", k)
		}
		w.deletePod(k, argOr(d, "recreate", "true") == "true")
		return w.podsTable(false)

	case "sick":
		k := testNS + "/" + argOr(d, "pod", "")
		w.sick[k] = argOr(d, "on", "true") == "true"
		return "ok"

	case "pullfail":
		k := testNS + "/" + argOr(d, "pod", "")
		w.pullFail[k] = argOr(d, "on", "true") == "true"
		return "ok"

	case "imageid":
		w.imageIDs[argOr(d, "image", "")] = argOr(d, "id", "")
		return "ok"
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}

func matches(a Action, pods, kinds []string) bool {
	if len(pods) > 0 {
		name := a.Pod
		if name == "" {
			name = a.Rollout
		}
		_, name, _ = strings.Cut(name, "/")
		if !slices.Contains(pods, name) {
			return false
		}
	}
	return len(kinds) == 0 || slices.Contains(kinds, string(a.Kind))
}

// run drives the loop the controller runs: plan, carry out, let the
// kubelets act, and when nothing is left to do now, tick to the wake-up.
func (w *world) run(rounds int) string {
	var b strings.Builder
	for range rounds {
		res := w.plan()
		if len(res.Actions) > 0 {
			fmt.Fprintf(&b, "plan at +%s:\n", time.Duration(w.now-epoch))
			for _, a := range res.Actions {
				if class := w.do(a, ""); class != "" {
					fmt.Fprintf(&b, "  FAILED %s: %s\n", class, a)
				} else {
					fmt.Fprintf(&b, "  %s\n", a)
				}
			}
			continue
		}
		if changed := w.kubelet(); len(changed) > 0 {
			fmt.Fprintf(&b, "kubelet: %s\n", strings.Join(changed, " "))
			continue
		}
		if res.WakeAt == 0 {
			fmt.Fprintf(&b, "quiet at +%s", time.Duration(w.now-epoch))
			return b.String()
		}
		d := time.Duration(res.WakeAt - w.now)
		w.tick(d)
		fmt.Fprintf(&b, "tick +%s\n", d)
	}
	fmt.Fprintf(&b, "still busy after %d rounds", rounds)
	return b.String()
}

func (w *world) statusText(name string) string {
	st, ok := w.rolloutStatus(name)
	if !ok {
		return "no status"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s replicas=%d updated=%d updatedReady=%d unavailable=%d failed=%d currentStep=%d",
		st.Phase, st.Replicas, st.Updated, st.UpdatedReady, st.Unavailable, st.Failed, st.CurrentStep)
	if st.StepPausedAt != nil {
		fmt.Fprintf(&b, " stepPausedAt=+%s", time.Duration(st.StepPausedAt.UnixNano()-epoch))
	}
	for _, c := range st.Conditions {
		fmt.Fprintf(&b, "\n%s=%s %s", c.Type, c.Status, c.Reason)
		if c.Message != "" {
			fmt.Fprintf(&b, ": %s", c.Message)
		}
	}
	return b.String()
}

func (w *world) podsTable(ids bool) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "pod\tzone\timages\tready\tgate\trevision\tstate\trestarts")
	if ids {
		fmt.Fprint(tw, "\timageIDs\tcontainerIDs")
	}
	fmt.Fprintln(tw)
	for _, k := range keysSorted(w.pods) {
		p := w.pods[k]
		zone := "-"
		if n := w.nodes[p.Pod.NodeName]; n != nil {
			zone = n.Node.Labels[zoneLabel]
		}
		var images, imageIDs, cids []string
		restarts := int32(0)
		for _, c := range p.Pod.Containers {
			im := c.Name + "=" + c.Image
			if c.State != "running" {
				im += "(" + c.State + ")"
			}
			if len(c.Requests) > 0 || len(c.Limits) > 0 {
				im += fmt.Sprintf("%s%s", kv(c.Requests), kv(c.Limits))
				if fmt.Sprint(c.ActualRequests, c.ActualLimits) != fmt.Sprint(c.Requests, c.Limits) {
					im += fmt.Sprintf("(actual %s%s)", kv(c.ActualRequests), kv(c.ActualLimits))
				}
			}
			images = append(images, im)
			imageIDs = append(imageIDs, c.ImageID)
			cids = append(cids, c.ContainerID)
			restarts += c.RestartCount
		}
		folded := projections.NewPod(p)
		gate := "-"
		if declaresGate(folded.Pod) {
			gate = "none"
		}
		if c := conditionOf(p.Pod, GateCondition); c != nil {
			gate = c.Status
		}
		state := "-"
		if st := readState(folded); st != nil {
			state = st.Revision()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%d", p.Name, zone, strings.Join(images, ","), podReady(folded.Pod), gate,
			orDash(p.Labels[RevisionLabel]), state, restarts)
		if ids {
			fmt.Fprintf(tw, "\t%s\t%s", strings.Join(imageIDs, ","), strings.Join(cids, ","))
		}
		fmt.Fprintln(tw)
	}
	for _, n := range keysSorted(w.sets) {
		wf := w.sets[n].obs.Workload
		fmt.Fprintf(tw, "statefulset %s: updateRevision=%s replicas=%d updated=%d ready=%d\n", n, wf.UpdateRevision, wf.Replicas, wf.UpdatedReplicas, wf.ReadyReplicas)
	}
	tw.Flush()
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
