package projections

import (
	"maps"

	"rollbook.dev/rollbook/journal"
)

// Container is one of a pod's containers as the fold keeps it. What the
// pods of a revision hold alike — the container's name, image, resolved
// image, state, the image the runtime reports, the resources asked and
// applied, its restarts and its readiness — is a ContainerShape that every
// pod whose container reads the same shares (containerShapes); only the
// container's ID is its own. 48 bytes a container, its ID held inline
// (ContainerID), where a journal.Container is 144 and its ID 80 more, for
// the two or three containers of each of a fleet's pods.
//
// The restarts and readiness are in the shape because a fleet's pods hold
// few of their values at a time (nearly all ready and started, restarted
// as often as the rollouts that changed them in place), and held here they
// made a container 56 bytes: two containers took a 112-byte block, not
// 96, for every pod (BENCHMARKS.md §1, "A container's restarts in its
// shape").
//
// The shape's fields read as the container's own (c.Image). They are
// written only by the dry run, to containers it has made its own
// (Pod.Own), since a write to a shared shape would change every pod that
// shares it: TestPreviewWritesNothing and TestPreviewAgreesWithTheLoop
// fail if the dry run writes to one.
//
// The fields carry journal.Container's keys, the shape's among them, so a
// checkpoint's containers encode as the journal.Containers they were made
// from; a checkpoint's load gives each its own shape, which
// Books.Restored shares again.
type Container struct {
	SpecHash ignored `cbor:"14,keyasint,omitempty"` // an older binary's; first, where it takes no room
	*ContainerShape
	ContainerID ContainerID `cbor:"4,keyasint,omitzero"` // omitted where a journal.Container omits ""
}

// ContainerShape is what a container shares with the same container of
// other pods: see Container.
type ContainerShape struct {
	Name           string            `cbor:"1,keyasint"`
	Image          string            `cbor:"2,keyasint"`
	ImageID        string            `cbor:"3,keyasint,omitempty"`
	State          string            `cbor:"8,keyasint,omitempty"`
	StatusImage    string            `cbor:"9,keyasint,omitempty"`
	Requests       map[string]string `cbor:"10,keyasint,omitempty"`
	Limits         map[string]string `cbor:"11,keyasint,omitempty"`
	ActualRequests map[string]string `cbor:"12,keyasint,omitempty"`
	ActualLimits   map[string]string `cbor:"13,keyasint,omitempty"`
	RestartCount   int32             `cbor:"5,keyasint,omitempty"`
	Ready          bool              `cbor:"6,keyasint,omitempty"`
	Started        bool              `cbor:"7,keyasint,omitempty"`
	RestartAlways  bool              `cbor:"15,keyasint,omitempty"`
}

// NewContainer is c as the fold keeps it, with a shape of its own.
func NewContainer(c journal.Container) Container {
	s := shapeOf(&c)
	return containerOf(&c, &s)
}

// containersOf is list as the fold keeps it, each shape its own until
// containerShapes.share; nil for an empty list. The shapes are made in
// one block, garbage once shared.
func containersOf(list []journal.Container) []Container {
	if len(list) == 0 {
		return nil
	}
	out := make([]Container, len(list))
	shapes := make([]ContainerShape, len(list))
	for i := range list {
		shapes[i] = shapeOf(&list[i])
		out[i] = containerOf(&list[i], &shapes[i])
	}
	return out
}

// shapeOf is what c shares with other pods' containers.
func shapeOf(c *journal.Container) ContainerShape {
	return ContainerShape{Name: c.Name, Image: c.Image, ImageID: c.ImageID, State: c.State, StatusImage: c.StatusImage,
		Requests: c.Requests, Limits: c.Limits, ActualRequests: c.ActualRequests, ActualLimits: c.ActualLimits,
		RestartCount: c.RestartCount, Ready: c.Ready, Started: c.Started, RestartAlways: c.RestartAlways}
}

// containerOf is c with shape s and its ID, its own.
func containerOf(c *journal.Container, s *ContainerShape) Container {
	return Container{ContainerShape: s, ContainerID: ParseContainerID(c.ContainerID)}
}

// Journal is c as a pod record holds it.
func (c Container) Journal() journal.Container {
	s := c.shape()
	return journal.Container{Name: s.Name, Image: s.Image, ImageID: s.ImageID, ContainerID: c.ContainerID.String(),
		RestartCount: s.RestartCount, Ready: s.Ready, Started: s.Started, State: s.State, StatusImage: s.StatusImage,
		Requests: s.Requests, Limits: s.Limits, ActualRequests: s.ActualRequests, ActualLimits: s.ActualLimits,
		RestartAlways: s.RestartAlways}
}

// journalContainers is list as a pod record holds it.
func journalContainers(list []Container) []journal.Container {
	if list == nil {
		return nil
	}
	out := make([]journal.Container, len(list))
	for i, c := range list {
		out[i] = c.Journal()
	}
	return out
}

var noShape ContainerShape

func (c Container) shape() *ContainerShape {
	if c.ContainerShape == nil {
		return &noShape
	}
	return c.ContainerShape
}

// own gives c a shape of its own, shared with no other pod, so that it
// can be written (Facts.Own). The maps stay shared: they are replaced,
// never written to.
func (c *Container) own() {
	s := *c.shape()
	c.ContainerShape = &s
}

// same: a and b read the same.
func (a *ContainerShape) same(b *ContainerShape) bool {
	return a.Name == b.Name && a.Image == b.Image && a.ImageID == b.ImageID && a.State == b.State &&
		a.StatusImage == b.StatusImage && a.RestartCount == b.RestartCount && a.Ready == b.Ready &&
		a.Started == b.Started && a.RestartAlways == b.RestartAlways &&
		maps.Equal(a.Requests, b.Requests) && maps.Equal(a.Limits, b.Limits) &&
		maps.Equal(a.ActualRequests, b.ActualRequests) && maps.Equal(a.ActualLimits, b.ActualLimits)
}

// containerShapes shares containers' shapes across the fleet, as
// conditionTexts shares conditions' text: a fixed table indexed by a hash
// of the shape, a miss replacing the slot, so it never grows.
type containerShapes struct {
	slots [256]*ContainerShape
}

// share makes each of f's containers' shape one that old (the pod as it
// was) or another pod already holds, where they read the same.
func (cs *containerShapes) share(f, old *Facts) {
	if f == nil {
		return
	}
	var was []Container
	if old != nil {
		was = old.Containers
	}
	cs.shareList(f.Containers, was)
	if old != nil {
		was = old.InitContainers()
	}
	cs.shareList(f.InitContainers(), was)
}

func (cs *containerShapes) shareList(list, was []Container) {
	for i := range list {
		c := &list[i]
		if c.ContainerShape == nil {
			continue
		}
		if i < len(was) && was[i].ContainerShape != nil && was[i].same(c.ContainerShape) {
			c.ContainerShape = was[i].ContainerShape // most records of a pod change no container's shape
			continue
		}
		s := c.ContainerShape
		h := fnv32(s.Name) ^ fnv32(s.Image)*16777619 ^ fnv32(s.ImageID) ^ fnv32(s.State)*31 ^ fnv32(s.StatusImage)*131
		// The restarts and readiness in the slot's low bits too: the same
		// container restarted once and not yet, or ready and not, are two
		// shapes a rollout's pods hold at once, and sharing one slot they
		// would take it from each other at every record.
		h ^= uint32(s.RestartCount)<<2 | bit(s.Ready)<<1 | bit(s.Started)
		c.ContainerShape = shared(&cs.slots[h&255], s, (*ContainerShape).same)
	}
}

func bit(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
