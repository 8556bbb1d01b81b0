package lean

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

const gate corev1.PodConditionType = "rollbook.dev/InPlaceUpdateReady"

var delays = Delays{ImageChange: 200 * time.Millisecond, Resize: 100 * time.Millisecond, SlowStart: 3 * time.Second, PullBackOff: time.Second, CrashLoop: time.Second}

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func newPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "ns", UID: "uid-1", ResourceVersion: "1", Generation: 1},
		Spec: corev1.PodSpec{
			NodeName:       "kwok-node-0000",
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate}},
			Containers:     []corev1.Container{{Name: "app", Image: "app:v1"}, {Name: "log", Image: "log:1"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}},
	}
}

// apply is the apiserver taking the kubelet's write: the status patch
// merged into the pod's JSON, as a strategic merge patch is, and a new
// resourceVersion.
func apply(t *testing.T, p *corev1.Pod, st *corev1.PodStatus) *corev1.Pod {
	t.Helper()
	body, err := statusPatch(p, st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"resourceVersion":"`+p.ResourceVersion+`"`) {
		t.Fatalf("patch without the resourceVersion precondition: %s", body)
	}
	orig, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, body, corev1.Pod{})
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.Pod
	if err := json.Unmarshal(merged, &out); err != nil {
		t.Fatal(err)
	}
	out.ResourceVersion += "+"
	return &out
}

// settle Steps p at now until it has nothing to write and returns it; a
// Step that keeps writing would be a status the kubelet cannot agree with.
func settle(t *testing.T, p *corev1.Pod, now time.Time, seen Seen) (*corev1.Pod, Output) {
	t.Helper()
	for range 3 {
		out := Step(Input{Pod: p, Now: now, Seen: seen, PodIP: "10.64.0.1", HostIP: "10.255.0.1"}, delays)
		if out.Status == nil {
			return p, out
		}
		p, seen = apply(t, p, out.Status), out.Seen
	}
	t.Fatalf("still writing after 3 Steps: %+v", p.Status)
	return nil, Output{}
}

func cond(p *corev1.Pod, typ corev1.PodConditionType) corev1.PodCondition {
	if i := conditionIndex(p.Status.Conditions, typ); i >= 0 {
		return p.Status.Conditions[i]
	}
	return corev1.PodCondition{}
}

func status(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

func TestStartGateAndRestart(t *testing.T) {
	p, _ := settle(t, newPod(), t0, nil)
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || p.Status.HostIP == "" || p.Status.StartTime == nil || p.Status.ObservedGeneration != 1 {
		t.Fatalf("started pod: %+v", p.Status)
	}
	for _, name := range []string{"app", "log"} {
		s := status(p, name)
		if s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started || s.ContainerID == "" || s.RestartCount != 0 {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if s := status(p, "app"); s.ImageID != ImageID("app:v1") || !strings.HasPrefix(s.ImageID, "docker.io/library/app@sha256:") {
		t.Errorf("imageID %s", s.ImageID)
	}
	if c := cond(p, corev1.ContainersReady); c.Status != corev1.ConditionTrue {
		t.Errorf("ContainersReady %+v", c)
	}
	if c := cond(p, corev1.PodReady); c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
		t.Errorf("Ready %+v, want False for the gate", c)
	}
	if i := conditionIndex(p.Status.Conditions, gate); i >= 0 {
		t.Errorf("the kubelet wrote the gate condition: %+v", p.Status.Conditions[i])
	}

	// The gate's owner sets it: Ready.
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: gate, Status: corev1.ConditionTrue})
	p, _ = settle(t, p, t0.Add(time.Second), nil)
	if c := cond(p, corev1.PodReady); c.Status != corev1.ConditionTrue || c.Reason != "" || c.Message != "" {
		t.Fatalf("Ready %+v, want True (and the gate's reason cleared)", c)
	}

	// An image change waits for the delay, then restarts app alone.
	before := *p.DeepCopy()
	p.Spec.Containers[0].Image = "app:v2"
	p.Generation = 2
	now := t0.Add(2 * time.Second)
	out := Step(Input{Pod: p, Now: now}, delays)
	if out.Status != nil || out.Wake != delays.ImageChange || len(out.Seen) != 1 {
		t.Fatalf("before the delay: wrote %v, wake %s, seen %v; want nothing written until the restart", out.Status != nil, out.Wake, out.Seen)
	}
	p, out = settle(t, p, now.Add(delays.ImageChange), out.Seen)
	if p.Status.ObservedGeneration != 2 || cond(p, corev1.PodReady).ObservedGeneration != 2 {
		t.Errorf("observedGeneration %d, want 2 with the restart", p.Status.ObservedGeneration)
	}
	app, oldApp := status(p, "app"), status(&before, "app")
	if app.Image != "app:v2" || app.ImageID != ImageID("app:v2") || app.RestartCount != 1 || app.ContainerID == oldApp.ContainerID || !app.Ready {
		t.Fatalf("after the delay: app %+v", app)
	}
	if term := app.LastTerminationState.Terminated; term == nil || term.ContainerID != oldApp.ContainerID || term.ExitCode != 0 {
		t.Errorf("lastState %+v, want the old container terminated", app.LastTerminationState)
	}
	if log := status(p, "log"); log.ContainerID != status(&before, "log").ContainerID || log.RestartCount != 0 {
		t.Errorf("log restarted: %+v", log)
	}
	if out.Wake != 0 || len(out.Seen) != 0 {
		t.Errorf("nothing pending after the restart, got wake %s seen %v", out.Wake, out.Seen)
	}
	if !(cond(p, corev1.PodReady).Status == corev1.ConditionTrue) {
		t.Errorf("Ready %+v", cond(p, corev1.PodReady))
	}
}

func TestDelete(t *testing.T) {
	p, _ := settle(t, newPod(), t0, nil)
	now := metav1.NewTime(t0)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, new(int64(30))
	if out := Step(Input{Pod: p, Now: t0}, delays); !out.Delete || out.Status != nil {
		t.Fatalf("graceful delete: %+v", out)
	}
	p.DeletionGracePeriodSeconds = new(int64(0))
	out := Step(Input{Pod: p, Now: t0}, delays)
	if out.Delete || out.Wake != staleDelete {
		t.Fatalf("grace 0: %+v, want no delete (the apiserver is removing it) and a look again later", out)
	}
	if out := Step(Input{Pod: p, Now: t0.Add(staleDelete), Seen: out.Seen}, delays); !out.Delete {
		t.Fatal("a pod left with grace 0 is not deleted again")
	}
}

func TestFailureInjection(t *testing.T) {
	p, _ := settle(t, newPod(), t0, nil)
	p.Spec.Containers[0].Image = "app:v2-pullfail"
	p, out := settle(t, p, t0.Add(time.Second), nil)
	p, out = settle(t, p, t0.Add(time.Second+delays.ImageChange), out.Seen)
	if s := status(p, "app"); s.State.Waiting == nil || s.State.Waiting.Reason != "ErrImagePull" || s.ContainerID != "" || s.RestartCount != 0 {
		t.Fatalf("pullfail: %+v", s)
	}
	p, _ = settle(t, p, t0.Add(time.Second+delays.ImageChange+delays.PullBackOff), out.Seen)
	if s := status(p, "app"); s.State.Waiting == nil || s.State.Waiting.Reason != "ImagePullBackOff" {
		t.Fatalf("pullfail after back-off: %+v", s)
	}
	if p.Status.Phase != corev1.PodRunning || cond(p, corev1.PodReady).Status != corev1.ConditionFalse {
		t.Errorf("phase %s Ready %+v", p.Status.Phase, cond(p, corev1.PodReady))
	}

	c := newPod()
	c.Spec.Containers[0].Image = "app:v1-crashloop"
	c, out = settle(t, c, t0, nil)
	rc := status(c, "app").RestartCount
	c, _ = settle(t, c, t0.Add(delays.CrashLoop), out.Seen)
	if s := status(c, "app"); s.RestartCount != rc+1 || s.State.Waiting == nil || s.State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("crashloop: %+v", s)
	}

	s := newPod()
	s.Spec.Containers[0].Image = "app:v1-slowstart"
	s, out = settle(t, s, t0, nil)
	if status(s, "app").Ready || out.Wake != delays.SlowStart {
		t.Fatalf("slowstart ready at once: %+v (wake %s)", status(s, "app"), out.Wake)
	}
	s, _ = settle(t, s, t0.Add(delays.SlowStart), nil)
	if !status(s, "app").Ready {
		t.Fatalf("slowstart not ready after the delay: %+v", status(s, "app"))
	}

	d, _ := settle(t, newPod(), t0, nil)
	id := status(d, "app").ImageID
	d.Spec.Containers[0].Image = "app:v2-samedigest"
	d, out = settle(t, d, t0, nil)
	d, _ = settle(t, d, t0.Add(delays.ImageChange), out.Seen)
	if s := status(d, "app"); s.ImageID != id || s.RestartCount != 1 {
		t.Fatalf("samedigest: %+v, want imageID %s", s, id)
	}
}
