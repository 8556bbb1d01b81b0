package projections

import "encoding/json"

// StateAnnotation is the pod annotation holding PodState as JSON.
const StateAnnotation = "rollbook.dev/state"

// PodState is the rollbook.dev/state annotation: written by the patch,
// read back through the watch. It records what the patch replaced, so that
// verification can tell a rebuilt container from the old one and a
// rollback can restore the exact images. It is parsed once, when the pod
// is folded (Pod.State), not on every plan: a plan reads it for every pod
// of the fleet.
type PodState struct {
	Rollout  string `json:"rollout"`
	Revision string `json:"rev"`
	// PatchedAt is the Unix nanosecond time of the tick the patch was
	// planned at: the start of the verify timeout.
	PatchedAt int64 `json:"at"`
	// Label is the pod's controller-revision-hash before the patch, for a
	// rollback.
	Label  string            `json:"label,omitempty"`
	Before []ContainerBefore `json:"before"`
}

// ContainerBefore is a container as it was before the patch.
type ContainerBefore struct {
	Name        string `json:"name"`
	Init        bool   `json:"init,omitempty"`
	Image       string `json:"image"`
	ImageID     string `json:"imageID,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	Restarts    int32  `json:"restarts"`
}

// ParseState reads a pod's state annotation: nil when there is none, or
// when it cannot be read (treated as never patched by Rollbook).
func ParseState(annotations map[string]string) *PodState {
	raw, ok := annotations[StateAnnotation]
	if !ok {
		return nil
	}
	var st PodState
	if json.Unmarshal([]byte(raw), &st) != nil {
		return nil
	}
	return &st
}
