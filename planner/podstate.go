package planner

import "rollbook.dev/rollbook/projections"

// PodState is the rollbook.dev/state annotation (see projections, which
// parses it when a pod is folded).
type PodState = projections.PodState

// ContainerBefore is a container as it was before the patch.
type ContainerBefore = projections.ContainerBefore
