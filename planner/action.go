package planner

import (
	"fmt"
	"sort"
	"strings"

	"rollbook.dev/rollbook/projections"
)

// ActionKind is the closed set of things the planner asks for.
type ActionKind string

const (
	// Gate sets the pod's rollbook.dev/InPlaceUpdateReady condition False
	// (pods/status) so the pod leaves Service endpoints before it is touched.
	Gate ActionKind = "gate"
	// Ungate sets that condition True: after a verified update, or on a pod
	// that declares the gate and has no condition yet.
	Ungate ActionKind = "ungate"
	// Patch changes images, the revision label and the state annotation in
	// one JSON patch whose `test` operations make it apply only to the pod
	// the plan saw (UID and the images it is replacing).
	Patch ActionKind = "patch"
	// Resize changes CPU/memory through the pods/resize subresource.
	Resize ActionKind = "resize"
	// Recreate evicts the pod (the Eviction API, so PodDisruptionBudgets
	// hold) with a UID precondition; its workload creates the replacement
	// from the new template.
	Recreate ActionKind = "recreate"
	// Status writes the rollout's status subresource.
	Status ActionKind = "status"
	// Event records a Kubernetes Event on the rollout.
	Event ActionKind = "event"
	// Measure takes one measurement of a step's analysis check (a
	// Prometheus query, a web request); its outcome record carries the
	// value and the verdict. It writes nothing to the cluster.
	Measure ActionKind = "measure"
)

// Names of the things Rollbook writes on pods.
const (
	// GateCondition is the readiness gate condition type.
	GateCondition = "rollbook.dev/InPlaceUpdateReady"
	// StateAnnotation holds PodState as JSON: what the patch replaced.
	StateAnnotation = projections.StateAnnotation
	// RevisionLabel is the StatefulSet/DaemonSet revision label.
	RevisionLabel = "controller-revision-hash"
	// TemplateGenerationLabel is the DaemonSet's revision label.
	TemplateGenerationLabel = "pod-template-generation"
	// Gate condition reasons.
	ReasonUpdating = "InPlaceUpdating"
	ReasonReady    = "InPlaceUpdateReady"
)

// ContainerChange is one container's image change in a Patch.
type ContainerChange struct {
	Name string `cbor:"1,keyasint" json:"name"`
	Init bool   `cbor:"2,keyasint,omitempty" json:"init,omitempty"`
	// Index is the container's position in spec.containers or
	// spec.initContainers, for the JSON patch path.
	Index int    `cbor:"3,keyasint" json:"index"`
	From  string `cbor:"4,keyasint" json:"from"`
	To    string `cbor:"5,keyasint" json:"to"`
}

// ResourceChange is one container's resources in a Resize.
type ResourceChange struct {
	Name     string            `cbor:"1,keyasint" json:"name"`
	Index    int               `cbor:"2,keyasint" json:"index"`
	Requests map[string]string `cbor:"3,keyasint,omitempty" json:"requests,omitempty"`
	Limits   map[string]string `cbor:"4,keyasint,omitempty" json:"limits,omitempty"`
}

// Action is one thing to do. It is a value: equal actions are equal
// structs, which is what replay compares. Which fields are set depends on
// Kind; String is the canonical form used by golden tests, logs and spans.
type Action struct {
	Kind ActionKind `cbor:"1,keyasint"`
	// Rollout is "namespace/name" of the rollout the action serves ("" for
	// an ungate of a pod no rollout claims).
	Rollout string `cbor:"2,keyasint,omitempty"`
	// Pod is "namespace/name"; UID is the precondition every pod write
	// carries, so an action never lands on a replacement pod.
	Pod string `cbor:"3,keyasint,omitempty"`
	UID string `cbor:"4,keyasint,omitempty"`
	// Revision is the rollout's target revision the action moves toward.
	Revision string `cbor:"5,keyasint,omitempty"`
	// Gate and Ungate: the condition's reason and message.
	Reason  string `cbor:"6,keyasint,omitempty"`
	Message string `cbor:"7,keyasint,omitempty"`
	// Patch.
	Images []ContainerChange `cbor:"8,keyasint,omitempty"`
	Labels map[string]string `cbor:"9,keyasint,omitempty"`
	// State is the rollbook.dev/state annotation's new value.
	State string `cbor:"10,keyasint,omitempty"`
	// Resize.
	Resources []ResourceChange `cbor:"11,keyasint,omitempty"`
	// Status: the rollout status to write; Event: EventType is Normal or
	// Warning, with Reason and Message.
	Status    *projections.RolloutStatus `cbor:"12,keyasint,omitempty"`
	EventType string                     `cbor:"13,keyasint,omitempty"`
	// RolloutUID is the precondition of rollout writes.
	RolloutUID string `cbor:"14,keyasint,omitempty"`
	// CreateAnnotations: the pod has no annotations map yet, so the patch
	// must create it before adding the state annotation.
	CreateAnnotations bool `cbor:"15,keyasint,omitempty"`
	// CreateLabels: likewise for the labels map.
	CreateLabels bool `cbor:"16,keyasint,omitempty"`
	// RemoveLabels are label keys the target template dropped, present on
	// the pod (a JSON-patch remove of an absent key fails the whole patch).
	RemoveLabels []string `cbor:"17,keyasint,omitempty"`
	// Annotations are template annotations added or changed between the
	// pod's revision and the target; RemoveAnnotations those it dropped,
	// present on the pod. Annotations no template named are never touched.
	Annotations       map[string]string `cbor:"18,keyasint,omitempty"`
	RemoveAnnotations []string          `cbor:"19,keyasint,omitempty"`
	// Gate and Ungate of a rollout with lifecycle hooks also set Labels
	// (the rollbook.dev/hook marker) and remove RemoveLabels (a hook's
	// release label; absent keys are fine in a strategic merge patch) in
	// the same pods/status write, and set each condition type in
	// ClearConditions False (a hook's release condition): see hook.go.
	ClearConditions []string `cbor:"20,keyasint,omitempty"`
	// Measure: the step whose analysis it serves, the check to measure
	// (all the measurer needs: it keeps no state) and the measurement's
	// number, from 1, which makes each measurement its own key.
	Step  int32                      `cbor:"21,keyasint,omitempty"`
	Check *projections.AnalysisCheck `cbor:"22,keyasint,omitempty"`
	N     int32                      `cbor:"23,keyasint,omitempty"`
}

// Key identifies the action for idempotence: an action with a key already
// succeeded need not run again. It names the object, its UID, the kind and
// the target, never a time.
func (a Action) Key() string {
	switch a.Kind {
	case Status:
		return fmt.Sprintf("status/%s/%s", a.Rollout, a.RolloutUID)
	case Event:
		return fmt.Sprintf("event/%s/%s/%s", a.Rollout, a.Reason, a.Message)
	case Measure:
		// projections.MeasurePendingKey cuts the number off: the rest
		// names the check.
		return fmt.Sprintf("measure/%s/%s/%d/%s/%d", a.Rollout, a.Revision, a.Step, checkName(a.Check), a.N)
	default:
		return fmt.Sprintf("%s/%s/%s/%s", a.Kind, a.Pod, a.UID, a.Revision)
	}
}

// String is the canonical one-line form.
func (a Action) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", a.Kind)
	if a.Pod != "" {
		fmt.Fprintf(&b, " pod=%s", a.Pod)
	}
	if a.Rollout != "" && a.Kind != Status && a.Kind != Event {
		fmt.Fprintf(&b, " rollout=%s", a.Rollout)
	}
	if a.Revision != "" {
		fmt.Fprintf(&b, " rev=%s", a.Revision)
	}
	switch a.Kind {
	case Gate, Ungate:
		fmt.Fprintf(&b, " reason=%s", a.Reason)
		for _, k := range sortedKeys(a.Labels) {
			fmt.Fprintf(&b, " label[%s]=%s", k, a.Labels[k])
		}
		for _, k := range a.RemoveLabels {
			fmt.Fprintf(&b, " label[%s]-", k)
		}
		for _, c := range a.ClearConditions {
			fmt.Fprintf(&b, " condition[%s]=False", c)
		}
	case Patch:
		for _, c := range a.Images {
			kind := "container"
			if c.Init {
				kind = "init"
			}
			fmt.Fprintf(&b, " %s[%s]=%s->%s", kind, c.Name, c.From, c.To)
		}
		for _, k := range sortedKeys(a.Labels) {
			fmt.Fprintf(&b, " label[%s]=%s", k, a.Labels[k])
		}
		for _, k := range a.RemoveLabels {
			fmt.Fprintf(&b, " label[%s]-", k)
		}
		for _, k := range sortedKeys(a.Annotations) {
			fmt.Fprintf(&b, " annotation[%s]=%s", k, a.Annotations[k])
		}
		for _, k := range a.RemoveAnnotations {
			fmt.Fprintf(&b, " annotation[%s]-", k)
		}
	case Resize:
		for _, r := range a.Resources {
			fmt.Fprintf(&b, " resources[%s]=requests%v,limits%v", r.Name, kv(r.Requests), kv(r.Limits))
		}
	case Status:
		s := a.Status
		fmt.Fprintf(&b, " rollout=%s phase=%s updated=%d/%d ready=%d unavailable=%d failed=%d step=%d",
			a.Rollout, s.Phase, s.Updated, s.Replicas, s.UpdatedReady, s.Unavailable, s.Failed, s.CurrentStep)
		for _, c := range s.Conditions {
			fmt.Fprintf(&b, " %s=%s(%s)", c.Type, c.Status, c.Reason)
		}
	case Event:
		fmt.Fprintf(&b, " rollout=%s %s %s: %s", a.Rollout, a.EventType, a.Reason, a.Message)
	case Measure:
		fmt.Fprintf(&b, " step=%d check=%s #%d", a.Step, checkName(a.Check), a.N)
	}
	return b.String()
}

func checkName(c *projections.AnalysisCheck) string {
	if c == nil {
		return ""
	}
	return c.Name
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kv(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+":"+m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}
