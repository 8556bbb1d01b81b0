package planner

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"rollbook.dev/rollbook/projections"
)

// stage is where a pod stands relative to its target.
type stage uint8

const (
	stageDone      stage = iota // at target and verified (or never needed it)
	stageIdle                   // needs an update, untouched
	stageGated                  // gated, waiting out the grace period, not patched
	stageResize                 // patched; resources still to change
	stageVerifying              // patched, waiting for the containers
	stageVerified               // verified, still gated: ungate
	stageFailed                 // verification timed out
	stageRecreate               // cannot change in place: delete it
	stageBlocked                // cannot change in place and may not be recreated
	stageSkipped                // no readiness gate and the rollout requires one
	stageUntouched              // rolling back, and this rollout never updated the pod
	stageDiverged               // created from the target and still cannot take it in place
	stagePostHook               // verified and ungated, held by its post-update hook
)

var stageNames = [...]string{"done", "idle", "gated", "resize", "verifying", "verified", "failed", "recreate", "blocked", "skipped", "untouched", "diverged", "post-update"}

func (s stage) String() string { return stageNames[s] }

// updating: patched and not yet verified and ungated, so unavailable
// whatever the kubelet says of its readiness; or gated; or held by its
// post-update hook, whose update is not finished until released.
func (s stage) updating() bool {
	switch s {
	case stageGated, stageResize, stageVerifying, stageVerified, stageFailed, stagePostHook:
		return true
	}
	return false
}

// podPlan is one pod's classification.
type podPlan struct {
	pod   *projections.Pod
	stage stage
	// Flags, packed beside stage: a fleet keeps a podPlan per pod.
	hasGate   bool // declares the readiness gate
	gated     bool // our condition is False (since gatedAt)
	ready     bool
	skipDrain bool // every changed container skips the drain
	untouched bool // rolling back a rollout that never updated this pod
	// The plan's time decided the stage: until, a deadline not yet
	// reached (a verification or a hook's wait), so the classification
	// holds while the time is before it; timed, a deadline passed, so it
	// holds for this plan only. Neither: it holds at any time.
	timed bool
	// restartPending: see restartPending; a fact of the pod and its
	// state, found once per classification.
	restartPending bool
	// keyed: sortKey is found (ordered finds it once per classification).
	keyed bool
	// group is the pod's scatter group, numbered by its Incremental's
	// scatterGroups for its rollout's scatter keys; 0 until ordered finds
	// it, once per classification as the sort key.
	group int32

	// images are the image changes, shared with the pods of its base
	// (sharedImages): nil without; read them through imageChanges.
	images *[]ContainerChange
	// labels may be the podTarget's patchLabels, shared: never change it.
	labels map[string]string
	// rare holds the changes few pods have; nil when none (read it
	// through rarely, write it through rareChanges).
	rare *rareChanges
	rev  string // the target revision classified against
	// sortKey: where it goes among the candidates (ordered).
	sortKey sortKey
}

// rareChanges are the changes of a pod's patch that most rollouts'
// pods do not have: resources (a resize), and metadata besides labels
// (see podTarget); why a pod is verifying, failed, blocked or recreated;
// until (see podPlan.timed); and a hook's wait. A rollout's pods have
// these a few at a time: kept here behind one pointer, they cost the
// podPlan every pod of a rollout has (80 bytes, TestPerPodSizes) 8 bytes,
// not 112.
type rareChanges struct {
	resources                       []ResourceChange
	removeLabels, removeAnnotations []string
	annotations                     map[string]string
	why                             string
	until                           int64
	// hook is the pod's lifecycle hook wait: pre-update while gated,
	// post-update once verified and ungated; nil without a hook (only a
	// rollout with hooks has one, and only for its pods under way).
	hook *hookWait
}

// imageChanges are the pod's image changes; nothing may change them.
func (pp *podPlan) imageChanges() []ContainerChange {
	if pp.images == nil {
		return nil
	}
	return *pp.images
}

// state is the pod's state annotation (readState: parsed when the pod
// was folded). A classification's pod never changes, so it is not kept
// in every pod's classification.
func (pp *podPlan) state() *PodState { return readState(pp.pod) }

// gatedAt is when the pod was gated, 0 when it is not: the gate
// condition's last transition, read from the pod the classification was
// made from (a pod is never changed in place: a new version is a new
// Pod, classified again), so it is what classify saw.
func (pp *podPlan) gatedAt() int64 {
	if !pp.gated {
		return 0
	}
	if c := gateCondition(pp.pod.Pod); c != nil {
		return c.LastTransition
	}
	return 0
}

// until is the deadline the classification holds until (see timed); 0
// for none.
func (pp *podPlan) until() int64 {
	if pp.rare == nil {
		return 0
	}
	return pp.rare.until
}

// rarely is the pod's rare changes, for reading: none for a pod without.
func (pp *podPlan) rarely() rareChanges {
	if pp.rare == nil {
		return rareChanges{}
	}
	return *pp.rare
}

// why is why the pod is verifying, failed, blocked or recreated.
func (pp *podPlan) why() string {
	if pp.rare == nil {
		return ""
	}
	return pp.rare.why
}

// setWhy sets why; an empty why makes no rareChanges.
func (pp *podPlan) setWhy(why string) {
	if why != "" || pp.rare != nil {
		pp.rareChanges().why = why
	}
}

// rareChanges is the pod's rare changes, made on the first one.
func (pp *podPlan) rareChanges() *rareChanges {
	if pp.rare == nil {
		pp.rare = &rareChanges{}
	}
	return pp.rare
}

// hook is the pod's hook wait, nil without one.
func (pp *podPlan) hook() *hookWait {
	if pp.rare == nil {
		return nil
	}
	return pp.rare.hook
}

// hookState is the state of the pod's hook wait, hookNone without one.
func (pp *podPlan) hookState() hookState {
	if w := pp.hook(); w != nil {
		return w.state
	}
	return hookNone
}

// restartPending: the pod carries a patch, of any revision, whose changed
// containers the kubelet has not restarted yet, so it is about to go
// unready whatever it reports now.
// Such a pod counts as unavailable even when idle for a newer revision
// (patched without a gate, or with skipDrain, toward the old one).
func restartPending(pp *podPlan) bool {
	st := pp.state()
	if st == nil {
		return false
	}
	for b := range st.Before() {
		c, _ := findContainer(pp.pod.Pod, b.Name, b.Init)
		if c != nil && c.Image != b.Image && c.ContainerID.Equal(b.ContainerID) {
			return true
		}
	}
	return false
}

// untouched is a pod a rolling-back rollout never updated.
func untouched(p *projections.Pod) *podPlan {
	pp := &podPlan{pod: p, stage: stageUntouched, untouched: true, hasGate: declaresGate(p.Pod), ready: podReady(p.Pod)}
	if c := gateCondition(p.Pod); c != nil && c.Status() == "False" && c.Reason() == ReasonUpdating {
		pp.gated = true
		pp.stage = stageGated // released at once: see rolloutPods
	}
	return pp
}

// podTarget is what one pod should become.
type podTarget struct {
	rev        string
	containers []want
	// label is the controller-revision-hash the pod must carry ("" for
	// selector targets); templateLabels other labels it must carry.
	label          string
	templateLabels map[string]string
	// labelKeys are templateLabels' keys, sorted; patchLabels is label
	// and templateLabels together, for a pod that has none of them (nil
	// when templateLabels sets the revision label itself).
	labelKeys   []string
	patchLabels map[string]string
	// Metadata the template dropped, and annotations it set: removed only
	// where the pod has them; annotations are set until applied.
	removeLabels, removeAnnotations []string
	annotations                     map[string]string
	// applied: this rollout already patched the pod toward this target, so
	// the template's annotations are on it (their values are not kept).
	applied bool
	// notInPlace names what the template changed that needs a new pod.
	notInPlace  string
	canRecreate bool
	// images is where the pods of one base (or of a selector target)
	// share their image changes; nil where nothing is shared.
	images *sharedImages
}

// sharedImages are lists of image changes diff made for pods of a base.
// The pods of one revision change the same images in the same way, and a
// rollout under way keeps every pod's classification: one list for all
// of them instead of one each. A few lists are kept, so that a pod that
// differs (one patched by hand) does not stop the others sharing.
type sharedImages struct{ lists []*[]ContainerChange }

const sharedImageLists = 4

// share returns imgs, or an equal list a pod of the same base already
// holds; nil for none. Nothing may change the list it returns.
func (s *sharedImages) share(imgs []ContainerChange) *[]ContainerChange {
	if len(imgs) == 0 {
		return nil
	}
	if s != nil {
		for _, l := range s.lists {
			if slices.Equal(*l, imgs) {
				return l
			}
		}
	}
	imgs = slices.Clip(imgs) // an append to one holder's list never writes into another's
	l := &imgs
	if s != nil && len(s.lists) < sharedImageLists {
		s.lists = append(s.lists, l)
	}
	return l
}

func gateCondition(p *projections.Facts) *projections.Condition {
	for i := range p.Conditions {
		if p.Conditions[i].Type() == GateCondition {
			return &p.Conditions[i]
		}
	}
	return nil
}

func podReady(p *projections.Facts) bool {
	for _, c := range p.Conditions {
		if c.Type() == "Ready" {
			return c.Status() == "True"
		}
	}
	return false
}

func declaresGate(p *projections.Facts) bool {
	for _, g := range p.ReadinessGates {
		if g == GateCondition {
			return true
		}
	}
	return false
}

// readState is the pod's state annotation, parsed when the pod was folded;
// a pod made by hand (a test, a dry run's edit) is parsed here.
func readState(p *projections.Pod) *PodState {
	if p.State != nil {
		return p.State
	}
	return projections.ParseState(p.Annotations)
}

// classify places a pod relative to its target at time now.
func classify(p *projections.Pod, t podTarget, spec projections.RolloutSpec, now int64) *podPlan {
	f := p.Pod
	pp := &podPlan{pod: p, hasGate: declaresGate(f), ready: podReady(f), skipDrain: true, rev: t.rev}
	st := pp.state()
	if c := gateCondition(f); c != nil && c.Status() == "False" && c.Reason() == ReasonUpdating {
		pp.gated = true
	}
	pp.restartPending = restartPending(pp)
	notInPlace := diff(pp, t)
	atTarget := pp.images == nil && len(pp.rarely().resources) == 0 && !pp.metadataChanges()
	ours := st != nil && st.Revision() == t.rev
	switch {
	case notInPlace != "":
		pp.setWhy(notInPlace)
		if t.canRecreate && spec.Strategy.Fallback != "Never" {
			pp.stage = stageRecreate
		} else {
			pp.stage = stageBlocked
		}
	case atTarget && ours:
		c := gateCondition(f)
		if c != nil && c.Status() == "True" && c.Reason() == ReasonReady && strings.Contains(c.Message(), t.rev) {
			pp.stage = stageDone // verified before it was ungated
			if h := postHook(spec); h != nil && p.Label(HookLabel) == HookPostUpdate {
				// The ungate marked it: the wait began with that write.
				w := waitAt(p, h, HookPostUpdate, c.LastTransition, now)
				pp.rareChanges().hook = &w
				pp.timedBy(w)
				if s := w.state; s == hookWaiting || s == hookTimedOut && !proceeds(h) {
					pp.stage = stagePostHook
				}
			}
			break
		}
		ok, why := verify(f, st, t)
		switch {
		case ok:
			pp.stage = stageVerified
		case now-st.PatchedAt >= verifyTimeout(spec):
			pp.stage, pp.timed = stageFailed, true
			pp.setWhy(why)
		default:
			pp.stage = stageVerifying
			pp.setWhy(why)
			pp.rareChanges().until = st.PatchedAt + verifyTimeout(spec)
		}
	case atTarget:
		pp.stage = stageDone
		if pp.gated {
			pp.stage = stageVerified // gated for a target it already has: ungate
		}
	case ours && pp.images == nil && !pp.metadataChanges():
		pp.stage = stageResize
	case !pp.hasGate && spec.RequireReadinessGate:
		pp.stage = stageSkipped
	case pp.gated:
		pp.stage = stageGated
		if h := preHook(spec); h != nil {
			w := waitAt(p, h, HookPreUpdate, pp.gatedAt(), now)
			pp.rareChanges().hook = &w
			pp.timedBy(w)
		}
	default:
		pp.stage = stageIdle
	}
	return pp
}

// timedBy records how a hook's wait made the classification depend on
// the plan's time.
func (pp *podPlan) timedBy(w hookWait) {
	switch w.state {
	case hookWaiting:
		pp.rareChanges().until = w.until
	case hookTimedOut:
		pp.timed = true
	}
}

// setLabel adds a label to the patch. The map is made on the first one:
// most pods' classifications (kept between plans) have none.
func (pp *podPlan) setLabel(k, v string) {
	if pp.labels == nil {
		pp.labels = map[string]string{}
	}
	pp.labels[k] = v
}

// changes says whether target w changes container c's image, and its
// resources.
func changes(c *projections.Container, w want) (image, resources bool) {
	return w.Image != "" && c.Image != w.Image, !sameQuantities(c.Requests, w.Requests) || !sameQuantities(c.Limits, w.Limits)
}

// before is what a patch replaces, per container t changes, in t's order:
// the state annotation records it for verify and rollback. It is found
// when the patch is made, not kept with every pod's classification: t
// and the pod are what diff read, so it lists what diff changed.
func before(f *projections.Facts, t podTarget) []ContainerBefore {
	var out []ContainerBefore
	for _, w := range t.containers {
		c, _ := findContainer(f, w.Name, w.Init)
		if c == nil {
			continue // diff refused the pod: it is never patched
		}
		if image, resources := changes(c, w); image || resources {
			out = append(out, ContainerBefore{Name: c.Name, Init: w.Init, Image: c.Image, ImageID: c.ImageID, ContainerID: c.ContainerID, Restarts: c.RestartCount})
		}
	}
	return out
}

// lacksAll: want is not empty and the pod has none of its label values.
func lacksAll(p *projections.Pod, want map[string]string) bool {
	for k, v := range want {
		if p.Label(k) == v {
			return false
		}
	}
	return len(want) > 0
}

// metadataChanges: the patch has labels or annotations to set or remove.
func (pp *podPlan) metadataChanges() bool {
	r := pp.rarely()
	return len(pp.labels)+len(r.removeLabels)+len(r.annotations)+len(r.removeAnnotations) > 0
}

// diff fills the pod's image, resource and metadata changes, and says why
// the change cannot be made in place ("" when it can).
func diff(pp *podPlan, t podTarget) string {
	f := pp.pod.Pod
	if t.notInPlace != "" {
		return t.notInPlace
	}
	var images []ContainerChange
	for _, w := range t.containers {
		c, idx := findContainer(f, w.Name, w.Init)
		if c == nil {
			return fmt.Sprintf("the pod has no container %q", w.Name)
		}
		image, resources := changes(c, w)
		if image {
			images = append(images, ContainerChange{Name: w.Name, Init: w.Init, Index: idx, From: c.Image, To: w.Image})
		}
		if resources {
			if w.Init && !c.RestartAlways {
				return fmt.Sprintf("init container %q cannot be resized in place", w.Name)
			}
			r := pp.rareChanges()
			r.resources = append(r.resources, ResourceChange{Name: w.Name, Index: idx, Requests: merge(c.Requests, w.Requests), Limits: merge(c.Limits, w.Limits)})
		}
		if (image || resources) && !w.SkipDrain {
			pp.skipDrain = false
		}
	}
	pp.images = t.images.share(images)
	if lacksAll(pp.pod, t.patchLabels) {
		// The common case, shared by every such pod of the revision: a
		// map per pod would hold the same labels once per pod.
		pp.labels = t.patchLabels
	} else {
		if t.label != "" && pp.pod.Label(RevisionLabel) != t.label {
			pp.setLabel(RevisionLabel, t.label)
		}
		for _, k := range t.labelKeys {
			if pp.pod.Label(k) != t.templateLabels[k] {
				pp.setLabel(k, t.templateLabels[k])
			}
		}
	}
	for _, k := range t.removeLabels {
		if _, ok := pp.pod.LookupLabel(k); ok {
			r := pp.rareChanges()
			r.removeLabels = append(r.removeLabels, k)
		}
	}
	if !t.applied && len(t.annotations) > 0 {
		pp.rareChanges().annotations = t.annotations
	}
	for _, k := range t.removeAnnotations {
		if _, ours := pp.pod.Annotations[k]; ours || slices.Contains(pp.pod.AnnotationKeys, k) {
			r := pp.rareChanges()
			r.removeAnnotations = append(r.removeAnnotations, k)
		}
	}
	// NB: the kubelet does not restart a container when a label or
	// annotation its env reads through fieldRef changes: the env would
	// silently keep the old value.
	for _, ref := range f.EnvFieldRefs {
		if ref == "metadata.annotations" || strings.Contains(ref, StateAnnotation) {
			return fmt.Sprintf("an env var reads %s through fieldRef, which an in-place update would leave stale", ref)
		}
		for _, k := range append(sortedKeys(pp.labels), pp.rarely().removeLabels...) {
			if ref == "metadata.labels" || strings.Contains(ref, "'"+k+"'") {
				return fmt.Sprintf("an env var reads label %s through fieldRef, which an in-place update would leave stale", k)
			}
		}
		for _, k := range append(sortedKeys(pp.rarely().annotations), pp.rarely().removeAnnotations...) {
			if strings.Contains(ref, "'"+k+"'") {
				return fmt.Sprintf("an env var reads annotation %s through fieldRef, which an in-place update would leave stale", k)
			}
		}
	}
	if rs := pp.rarely().resources; len(rs) > 0 {
		if from, to := f.QOSClass, qosAfter(f, rs); from != "" && from != to {
			return fmt.Sprintf("the resize would change the pod's QoS class from %s to %s", from, to)
		}
	}
	return ""
}

func sameQuantities(have, want map[string]string) bool {
	for k, w := range want {
		h, ok := have[k]
		if !ok {
			return false
		}
		hq, err1 := resource.ParseQuantity(h)
		wq, err2 := resource.ParseQuantity(w)
		if err1 != nil || err2 != nil {
			if h != w {
				return false
			}
			continue
		}
		if hq.Cmp(wq) != 0 {
			return false
		}
	}
	return true
}

// qosAfter is the pod's QoS class with the resource changes applied.
func qosAfter(f *projections.Facts, changes []ResourceChange) string {
	guaranteed, any := true, false
	for _, c := range f.Containers {
		req, lim := c.Requests, c.Limits
		for _, ch := range changes {
			if ch.Name == c.Name {
				req, lim = ch.Requests, ch.Limits
			}
		}
		for _, r := range []string{"cpu", "memory"} {
			if req[r] != "" || lim[r] != "" {
				any = true
			}
			if lim[r] == "" || (req[r] != "" && !sameQuantities(map[string]string{r: req[r]}, map[string]string{r: lim[r]})) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return "BestEffort"
	case guaranteed:
		return "Guaranteed"
	}
	return "Burstable"
}

// verify says whether every container the patch changed really runs the
// new state: a new imageID, or for a retag with the same digest a new
// container; a digest pin must match exactly; then running and ready.
func verify(f *projections.Facts, st *PodState, t podTarget) (bool, string) {
	for b := range st.Before() {
		c, _ := findContainer(f, b.Name, b.Init)
		if c == nil {
			return false, fmt.Sprintf("container %q is gone", b.Name)
		}
		if c.Image != b.Image { // the image was changed
			if _, digest, pinned := strings.Cut(c.Image, "@"); pinned && !strings.HasSuffix(c.ImageID, digest) {
				return false, fmt.Sprintf("container %q runs %s, not the pinned %s", b.Name, orNone(c.ImageID), digest)
			}
			// A rebuilt container has a new ID and either a new imageID or,
			// for a retag of the same digest, a higher restartCount. A new
			// ID alone proves nothing: a status written from an older
			// snapshot can rename a container that never restarted.
			if c.ContainerID.Equal(b.ContainerID) || c.ImageID == "" || (c.ImageID == b.ImageID && c.RestartCount <= b.Restarts) {
				return false, fmt.Sprintf("container %q has not restarted with %s yet%s", b.Name, c.Image, waiting(c))
			}
			// A pod patched again while the kubelet had not yet taken its
			// last patch (b.Image, not yet running) may restart for that
			// one first: a new ID and image ID, running the old target.
			if sameImage(c.StatusImage, b.Image) && !sameImage(c.StatusImage, c.Image) {
				return false, fmt.Sprintf("container %q restarted with %s, not yet with %s", b.Name, c.StatusImage, c.Image)
			}
		}
		for _, w := range t.containers {
			if w.Name == b.Name && w.Init == b.Init && (len(w.Requests) > 0 || len(w.Limits) > 0) {
				if !sameQuantities(c.ActualRequests, w.Requests) || !sameQuantities(c.ActualLimits, w.Limits) {
					return false, fmt.Sprintf("container %q does not run with the new resources yet", b.Name)
				}
			}
		}
		if !b.Init && (!c.Ready || c.State != "running") {
			return false, fmt.Sprintf("container %q is not ready%s", b.Name, waiting(c))
		}
	}
	for _, c := range f.Conditions {
		if (c.Type() == "PodResizePending" || c.Type() == "PodResizeInProgress") && c.Status() == "True" {
			return false, fmt.Sprintf("resize %s: %s", strings.TrimPrefix(c.Type(), "PodResize"), c.Message())
		}
	}
	return true, ""
}

// sameImage: the runtime's report of an image (a container status's
// image) names the spec's reference ref, as given or as the runtime
// completes it (containerd reports "docker.io/library/app:v1" for
// "app:v1"). A report that cannot be told is not the same.
func sameImage(status, ref string) bool {
	return status != "" && (status == ref || strings.HasSuffix(status, "/"+ref))
}

func orNone(s string) string {
	if s == "" {
		return "no image yet"
	}
	return s
}

func waiting(c *projections.Container) string {
	if r, ok := strings.CutPrefix(c.State, "waiting:"); ok && r != "" {
		return " (" + r + ")"
	}
	return ""
}

func verifyTimeout(spec projections.RolloutSpec) int64 {
	s := int64(300)
	if v := spec.Strategy.VerifyTimeoutSeconds; v != nil {
		s = int64(*v)
	}
	return s * 1e9
}

func gracePeriod(spec projections.RolloutSpec) int64 {
	if v := spec.Strategy.GracePeriodSeconds; v != nil {
		return int64(*v) * 1e9
	}
	return 0
}
