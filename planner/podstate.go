package planner

// PodState is the rollbook.dev/state annotation: written by the patch,
// read back through the watch. It records what the patch replaced, so that
// verification can tell a rebuilt container from the old one and a
// rollback can restore the exact images.
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
