package lean

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Delays are how long each simulated runtime action takes, counted from
// when the kubelet first saw the need for it (Seen).
type Delays struct {
	Start       time.Duration // a new pod's containers start
	ImageChange time.Duration // a container whose image changed comes back
	Resize      time.Duration // a resize shows in the container statuses
	SlowStart   time.Duration // a "slowstart" container becomes ready, from its startedAt
	PullBackOff time.Duration // ErrImagePull turns into ImagePullBackOff
	CrashLoop   time.Duration // between two restarts of a "crashloop" container
}

// Seen holds, for one pod, when the kubelet first saw each transition it is
// waiting to make (keyed by what the transition is for, e.g. the container
// and the image it is to run). It is the only memory the kubelet keeps
// between two Steps of a pod: everything else is read from the pod.
type Seen map[string]time.Time

// Input is what Step decides from.
type Input struct {
	Pod  *corev1.Pod
	Now  time.Time
	Seen Seen
	// HostIP and PodIP are the addresses to give the pod if it has none.
	HostIP, PodIP string
}

// Output is what Step decided.
type Output struct {
	// Status is the pod's status as the kubelet would report it now, or
	// nil when the pod's status says so already (nothing to write).
	Status *corev1.PodStatus
	// Delete: the pod is being deleted gracefully and its containers are
	// (simulated as) stopped: delete it with grace 0.
	Delete bool
	// Seen is the pending transitions still waited on; pass it to the
	// pod's next Step.
	Seen Seen
	// Wake, when positive, is when a pending transition falls due: Step
	// the pod again then, even if nothing else changed.
	Wake time.Duration
}

// OwnedConditions are the pod conditions the kubelet writes. The rest (the
// scheduler's PodScheduled, readiness gates) belong to others and are only
// read.
var OwnedConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
}

// Step is the simulated kubelet for one pod: from the pod's spec, its
// current status, the time and what was seen pending before, it returns the
// status to report now. It is level triggered (a pod whose status already
// agrees with its spec gives a nil Status) and pure: the caller writes the
// status, keeps Seen and calls again after Wake or on the next event.
//
// Transitions, per container: the first start; an image change restarts
// that container alone after Delays.ImageChange (new containerID and
// imageID, restartCount +1, lastState.terminated holding the old one); a
// resize shows after Delays.Resize; the failure injections (see the package
// documentation). Then the pod-level fields are derived from the container
// statuses as the kubelet does: phase, the owned conditions with the Ready
// rule over spec.readinessGates, and observedGeneration: metadata.generation
// at once, or, when the spec change waits for a delay, with the write that
// carries it out.
func Step(in Input, d Delays) Output {
	p := in.Pod
	out := Output{Seen: Seen{}}
	s := &stepper{in: in, d: d, out: &out, stamp: metav1.NewTime(in.Now.Truncate(time.Second))}
	if p.DeletionTimestamp != nil {
		// At grace 0 the apiserver removes the pod itself (once its
		// finalizers' owners are done), so deleting at once would only race
		// it; a pod still there a while later (a delete cut short between
		// its two writes) is deleted again, as the kubelet finishes every
		// pod whose containers stopped.
		switch g := p.DeletionGracePeriodSeconds; {
		case g == nil || *g > 0:
			out.Delete = true
		case len(p.Finalizers) == 0:
			out.Delete = s.due("delete", staleDelete)
		}
		return out
	}
	if len(p.Status.ContainerStatuses) == 0 && !s.due("start", d.Start) {
		return out
	}
	st := p.Status.DeepCopy()
	old := map[string]*corev1.ContainerStatus{}
	for i := range p.Status.ContainerStatuses {
		old[p.Status.ContainerStatuses[i].Name] = &p.Status.ContainerStatuses[i]
	}
	st.ContainerStatuses = make([]corev1.ContainerStatus, 0, len(p.Spec.Containers))
	for i := range p.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, s.container(&p.Spec.Containers[i], old[p.Spec.Containers[i].Name]))
	}
	if len(p.Status.InitContainerStatuses) != len(p.Spec.InitContainers) {
		st.InitContainerStatuses = s.initContainers()
	}
	s.podFields(st)
	if !sameStatus(st, &p.Status) {
		out.Status = st
	}
	return out
}

// staleDelete is how long a pod deleted with grace 0 may stay before the
// kubelet deletes it again.
const staleDelete = 5 * time.Second

type stepper struct {
	in    Input
	d     Delays
	out   *Output
	stamp metav1.Time // now, at the second: what the apiserver keeps of a time
	// specPending: a spec change (image, resources) waits for its delay.
	// The generation it came with is acknowledged (observedGeneration)
	// when it is carried out, in the same write, as kwok does: one write
	// per restart, not an acknowledgement and then a restart.
	specPending bool
}

// due reports whether the transition key, pending since it was first
// seen, has waited delay; if not, it stays pending and sets the wake-up.
func (s *stepper) due(key string, delay time.Duration) bool {
	since, ok := s.in.Seen[key]
	if !ok {
		since = s.in.Now
	}
	left := since.Add(delay).Sub(s.in.Now)
	if left <= 0 {
		return true
	}
	s.out.Seen[key] = since
	s.wake(left)
	return false
}

func (s *stepper) wake(d time.Duration) {
	if s.out.Wake == 0 || d < s.out.Wake {
		s.out.Wake = d
	}
}

// container returns c's status after whatever transition is due; old is
// its current status (nil before its first start).
func (s *stepper) container(c *corev1.Container, old *corev1.ContainerStatus) corev1.ContainerStatus {
	switch {
	case old == nil:
		return s.create(c, nil)
	case old.Image != c.Image:
		if !s.due("image "+c.Name+" "+c.Image, s.d.ImageChange) {
			s.specPending = true
			return *old.DeepCopy()
		}
		return s.create(c, old)
	}
	n := *old.DeepCopy()
	if res, alloc := resources(c); !equality.Semantic.DeepEqual(res, n.Resources) || !equality.Semantic.DeepEqual(alloc, n.AllocatedResources) {
		if s.due("resize "+c.Name, s.d.Resize) {
			n.Resources, n.AllocatedResources = res, alloc
		} else {
			s.specPending = true
		}
	}
	switch k := kind(c.Image); {
	case k == SlowStart && n.State.Running != nil && !n.Ready:
		left := n.State.Running.StartedAt.Add(s.d.SlowStart).Sub(s.in.Now)
		if left <= 0 {
			n.Ready = true
		} else {
			s.wake(left)
		}
	case k == PullFail && n.State.Waiting != nil && n.State.Waiting.Reason == "ErrImagePull":
		if s.due("pullbackoff "+c.Name, s.d.PullBackOff) {
			n.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}
		}
	case k == CrashLoop && n.State.Waiting != nil && n.State.Waiting.Reason == "CrashLoopBackOff":
		if s.due(fmt.Sprintf("crashloop %s %d", c.Name, n.RestartCount), s.d.CrashLoop) {
			n.RestartCount++
			n.ContainerID = s.containerID(c.Name, n.RestartCount)
			n.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", StartedAt: s.stamp, FinishedAt: s.stamp, ContainerID: n.ContainerID,
			}}
			// The next restart is a period after this one.
			s.due(fmt.Sprintf("crashloop %s %d", c.Name, n.RestartCount), s.d.CrashLoop)
		}
	}
	return n
}

// create is the runtime making a container for c: the first start when old
// is nil, else the kubelet killing the old one (image changed) and
// creating it anew. The pod's sandbox and other containers stay.
func (s *stepper) create(c *corev1.Container, old *corev1.ContainerStatus) corev1.ContainerStatus {
	n := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: ImageID(c.Image)}
	n.Resources, n.AllocatedResources = resources(c)
	if old != nil {
		n.RestartCount = old.RestartCount
		// The count goes up only when a container ran before: a pull that
		// failed created none.
		if old.ContainerID != "" || (old.LastTerminationState.Terminated != nil && old.LastTerminationState.Terminated.ContainerID != "") {
			n.RestartCount++
		}
		n.LastTerminationState = *old.LastTerminationState.DeepCopy()
		if r := old.State.Running; r != nil {
			n.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: r.StartedAt, FinishedAt: s.stamp, ContainerID: old.ContainerID,
			}}
		}
		// A retag: the new tag resolves to the digest already running.
		if strings.Contains(c.Image, SameDigest) && old.ImageID != "" {
			n.ImageID = old.ImageID
		}
	}
	switch kind(c.Image) {
	case PullFail:
		// No container is created: no imageID, no containerID, the count
		// as it was.
		if old != nil {
			n.RestartCount = old.RestartCount
		}
		n.ImageID = ""
		n.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "ErrImagePull", Message: fmt.Sprintf("failed to pull and unpack image %q: not found", c.Image),
		}}
		s.due("pullbackoff "+c.Name, s.d.PullBackOff)
	case CrashLoop:
		n.ContainerID = s.containerID(c.Name, n.RestartCount)
		n.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", StartedAt: s.stamp, FinishedAt: s.stamp, ContainerID: n.ContainerID,
		}}
		n.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off 10s restarting failed container=%s pod=%s_%s(%s)",
				c.Name, s.in.Pod.Name, s.in.Pod.Namespace, s.in.Pod.UID),
		}}
		s.due(fmt.Sprintf("crashloop %s %d", c.Name, n.RestartCount), s.d.CrashLoop)
	default:
		started := true
		n.ContainerID = s.containerID(c.Name, n.RestartCount)
		n.Started = &started
		n.Ready = kind(c.Image) != SlowStart
		n.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: s.stamp}}
		if !n.Ready {
			s.wake(s.d.SlowStart)
		}
	}
	if n.Started == nil {
		started := false
		n.Started = &started
	}
	return n
}

// containerID names a new container: unique per pod, container, restart
// and moment, so a container made again is never mistaken for the old one.
// It has the form a kubelet over containerd reports, as most clusters' do
// (the fold holds such an ID in 40 bytes, any other form as its text).
func (s *stepper) containerID(name string, restarts int32) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d/%d", s.in.Pod.UID, name, restarts, s.in.Now.UnixNano()))
	return "containerd://" + hex.EncodeToString(sum[:])
}

// resources are what the runtime reports of c's resources: status.resources
// follow the spec, allocatedResources are the requests.
func resources(c *corev1.Container) (*corev1.ResourceRequirements, corev1.ResourceList) {
	r := c.Resources
	if len(r.Requests) == 0 && len(r.Limits) == 0 {
		return nil, nil
	}
	return &corev1.ResourceRequirements{Requests: r.Requests.DeepCopy(), Limits: r.Limits.DeepCopy()}, r.Requests.DeepCopy()
}

// initContainers are the init containers after the pod's start: run to
// completion, or running and ready for sidecars (restartPolicy Always).
func (s *stepper) initContainers() []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, c := range s.in.Pod.Spec.InitContainers {
		started := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		n := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: ImageID(c.Image), Ready: true, Started: &started,
			ContainerID: s.containerID(c.Name, 0),
		}
		if started {
			n.State.Running = &corev1.ContainerStateRunning{StartedAt: s.stamp}
		} else {
			n.State.Terminated = &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: s.stamp, FinishedAt: s.stamp, ContainerID: n.ContainerID}
		}
		out = append(out, n)
	}
	return out
}

// podFields derives the pod-level status from the container statuses in
// st: phase, the owned conditions, observedGeneration, and on the first
// start, startTime and addresses.
func (s *stepper) podFields(st *corev1.PodStatus) {
	p := s.in.Pod
	if len(st.ContainerStatuses) == 0 {
		return
	}
	var unready []string
	pending := false
	for _, c := range st.ContainerStatuses {
		if !c.Ready {
			unready = append(unready, c.Name)
		}
		if c.State.Waiting != nil && c.LastTerminationState.Terminated == nil {
			pending = true // a container that never ran
		}
	}
	st.Phase = corev1.PodRunning
	if pending {
		st.Phase = corev1.PodPending
	}
	if st.StartTime == nil {
		t := s.stamp
		st.StartTime = &t
	}
	if st.PodIP == "" && s.in.PodIP != "" {
		st.PodIP, st.PodIPs = s.in.PodIP, []corev1.PodIP{{IP: s.in.PodIP}}
	}
	if st.HostIP == "" && s.in.HostIP != "" {
		st.HostIP, st.HostIPs = s.in.HostIP, []corev1.HostIP{{IP: s.in.HostIP}}
	}
	if p.Generation != 0 && !s.specPending {
		st.ObservedGeneration = p.Generation
	}

	// The kubelet's Ready rule: every container ready, and a True
	// condition for every readiness gate (written by the gate's owner).
	want := []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
	}
	if len(unready) > 0 {
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		want = append(want,
			corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: msg},
			corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: msg})
	} else {
		want = append(want, corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue})
		if msg := gatesMessage(p); msg != "" {
			want = append(want, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ReadinessGatesNotReady", Message: msg})
		} else {
			want = append(want, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		}
	}
	for _, w := range want {
		w.LastTransitionTime = s.stamp
		w.ObservedGeneration = st.ObservedGeneration
		i := conditionIndex(st.Conditions, w.Type)
		if i < 0 {
			st.Conditions = append(st.Conditions, w)
			continue
		}
		if st.Conditions[i].Status == w.Status {
			w.LastTransitionTime = st.Conditions[i].LastTransitionTime
		}
		st.Conditions[i] = w
	}
}

// gatesMessage is why the readiness gates keep the pod NotReady, or "".
func gatesMessage(p *corev1.Pod) string {
	for _, g := range p.Spec.ReadinessGates {
		i := conditionIndex(p.Status.Conditions, g.ConditionType)
		if i < 0 {
			return fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType)
		}
		if c := p.Status.Conditions[i]; c.Status != corev1.ConditionTrue {
			return fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %s", g.ConditionType, c.Status)
		}
	}
	return ""
}

func conditionIndex(cs []corev1.PodCondition, t corev1.PodConditionType) int {
	for i := range cs {
		if cs[i].Type == t {
			return i
		}
	}
	return -1
}

// sameStatus compares two statuses as the apiserver keeps them: times at
// the second (Semantic), empty and absent alike, conditions in any order
// (a merge patch may reorder them).
func sameStatus(a, b *corev1.PodStatus) bool {
	sorted := func(st *corev1.PodStatus) *corev1.PodStatus {
		c := *st
		c.Conditions = append([]corev1.PodCondition(nil), st.Conditions...)
		sort.Slice(c.Conditions, func(i, j int) bool { return c.Conditions[i].Type < c.Conditions[j].Type })
		return &c
	}
	return equality.Semantic.DeepEqual(sorted(a), sorted(b))
}
