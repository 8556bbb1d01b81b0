package projections

import (
	"slices"

	"rollbook.dev/rollbook/journal"
)

// Facts are a pod's facts as the fold keeps them: journal.PodFacts less
// what no plan reads (the pod IP and the conditions dropped names), each
// condition's text shared by every pod whose condition reads the same
// (a fleet's Ready and gate conditions say the same things; only their
// transition times are a pod's own). Their phase, gates, QoS class and
// env references (FactsShape) and each container's shape (Container) are
// shared the same way. A checkpoint encodes them as the journal.PodFacts
// they were made from.
type Facts struct {
	// What a checkpoint of an older binary may hold, dropped (first,
	// where they take no room).
	PodIP    ignored `cbor:"3,keyasint,omitempty"`
	SpecHash ignored `cbor:"10,keyasint,omitempty"`
	// The phase, gates, QoS class and env references, shared (never nil
	// in the fold: factsOf, factsShapes.share).
	*FactsShape
	NodeName   string      `cbor:"1,keyasint,omitempty"`
	Conditions []Condition `cbor:"5,keyasint,omitempty"`
	Containers []Container `cbor:"6,keyasint,omitempty"`
	// Init is the init containers, nil without: few pods have any, and
	// a pointer is 16 bytes less than a list for every pod of a fleet (a
	// Facts is 80 bytes, not 96). Read and write them through
	// InitContainers and SetInitContainers.
	Init *[]Container `cbor:"7,keyasint,omitempty"`
}

// InitContainers are the pod's init containers.
func (f *Facts) InitContainers() []Container {
	if f.Init == nil {
		return nil
	}
	return *f.Init
}

// SetInitContainers makes list the pod's init containers.
func (f *Facts) SetInitContainers(list []Container) {
	if len(list) == 0 {
		f.Init = nil
		return
	}
	f.Init = &list
}

// FactsShape is what a pod's facts hold alike with most of a fleet's
// pods, shared by every pod whose facts read the same (factsShapes): the
// phase, the readiness gates, the QoS class and the labels and
// annotations env vars read. Its fields read as the Facts' own; as with
// a ContainerShape, only the dry run writes to one, after Pod.Own.
type FactsShape struct {
	Phase          string   `cbor:"2,keyasint,omitempty"`
	ReadinessGates []string `cbor:"4,keyasint,omitempty"`
	QOSClass       string   `cbor:"8,keyasint,omitempty"`
	// EnvFieldRefs lists label/annotation paths that feed env vars through
	// fieldRef: see journal.PodFacts.
	EnvFieldRefs []string `cbor:"9,keyasint,omitempty"`
}

// Condition is one of a pod's conditions: its text, maybe shared with
// other pods (so it is read through methods and never written), and its
// own transition time.
type Condition struct {
	text           *conditionText
	LastTransition int64 // Unix ns
}

type conditionText struct{ typ, status, reason, message string }

// NewCondition is a condition of its own (shared with no pod).
func NewCondition(typ, status, reason, message string, lastTransition int64) Condition {
	return Condition{text: &conditionText{typ, status, reason, message}, LastTransition: lastTransition}
}

func (c Condition) Type() string    { return c.read().typ }
func (c Condition) Status() string  { return c.read().status }
func (c Condition) Reason() string  { return c.read().reason }
func (c Condition) Message() string { return c.read().message }

// noText is what a zero Condition reads.
var noText conditionText

func (c Condition) read() *conditionText {
	if c.text == nil {
		return &noText
	}
	return c.text
}

// dropped: the pod conditions the kubelet and the scheduler keep that no
// plan, status or view reads; factsOf leaves them out, with the pod IP. A
// fleet's pods carry four of them, and the fold would otherwise hold them
// for every pod (a fifth of a pod's memory in the fold). Ready, Rollbook's
// gate, the resize conditions and every condition a hook controller sets
// are kept.
func dropped(typ string) bool {
	switch typ {
	case "PodScheduled", "Initialized", "ContainersReady", "PodReadyToStartContainers":
		return true
	}
	return false
}

// KeepsCondition says whether the fold keeps a pod's conditions of this
// type: a hook that waits for one it drops would wait forever, so the
// planner refuses it (planner.hookProblem).
func KeepsCondition(typ string) bool { return !dropped(typ) }

// factsOf is f as the fold keeps it, sharing f's lists and containers;
// nil for nil.
func factsOf(f *journal.PodFacts) *Facts {
	if f == nil {
		return nil
	}
	out := &Facts{FactsShape: &FactsShape{Phase: f.Phase, ReadinessGates: f.ReadinessGates, QOSClass: f.QOSClass,
		EnvFieldRefs: f.EnvFieldRefs}, NodeName: f.NodeName, Containers: containersOf(f.Containers)}
	out.SetInitContainers(containersOf(f.InitContainers))
	n := 0
	for _, c := range f.Conditions {
		if !dropped(c.Type) {
			n++
		}
	}
	if n > 0 {
		// The texts in one block: conditionTexts.share points every
		// condition at a text of its own table or of the pod's last
		// record, so the block is garbage once the pod is folded.
		out.Conditions = make([]Condition, 0, n)
		texts := make([]conditionText, 0, n)
		for _, c := range f.Conditions {
			if !dropped(c.Type) {
				texts = append(texts, conditionText{c.Type, c.Status, c.Reason, c.Message})
				out.Conditions = append(out.Conditions, Condition{text: &texts[len(texts)-1], LastTransition: c.LastTransition})
			}
		}
	}
	return out
}

// PodFacts is f as a pod record's body holds it (what the fold kept of
// it), sharing f's lists and containers.
func (f *Facts) PodFacts() *journal.PodFacts {
	if f == nil {
		return nil
	}
	sh := f.shape()
	out := &journal.PodFacts{NodeName: f.NodeName, Phase: sh.Phase, ReadinessGates: sh.ReadinessGates,
		Containers: journalContainers(f.Containers), InitContainers: journalContainers(f.InitContainers()),
		QOSClass: sh.QOSClass, EnvFieldRefs: sh.EnvFieldRefs}
	for _, c := range f.Conditions {
		out.Conditions = append(out.Conditions, journal.Condition{Type: c.Type(), Status: c.Status(), Reason: c.Reason(), Message: c.Message(), LastTransition: c.LastTransition})
	}
	return out
}

// MarshalCBOR encodes c as a journal.Condition, so that a checkpoint's
// Facts encode as the journal.PodFacts they were made from.
func (c Condition) MarshalCBOR() ([]byte, error) {
	return journal.EncodeBody(&journal.Condition{Type: c.Type(), Status: c.Status(), Reason: c.Reason(), Message: c.Message(), LastTransition: c.LastTransition})
}

// UnmarshalCBOR reads what MarshalCBOR wrote, as a condition of its own
// (Books.Restored shares the text again).
func (c *Condition) UnmarshalCBOR(b []byte) error {
	var jc journal.Condition
	if err := journal.DecodeBody(b, &jc); err != nil {
		return err
	}
	*c = NewCondition(jc.Type, jc.Status, jc.Reason, jc.Message, jc.LastTransition)
	return nil
}

// restored drops from facts a checkpoint held what factsOf drops: an
// older binary's checkpoint kept every condition.
func (f *Facts) restored() {
	if f == nil {
		return
	}
	f.Conditions = slices.DeleteFunc(f.Conditions, func(c Condition) bool { return dropped(c.Type()) })
	if len(f.Conditions) == 0 {
		f.Conditions = nil // as factsOf leaves a pod without any
	}
}

// conditionTexts shares the text of pods' conditions across the fleet: a
// fixed table indexed by a hash of the text, a miss replacing the slot, so
// it never grows (texts seen once cost what they did).
type conditionTexts struct {
	slots [256]*conditionText
}

// share makes each of f's conditions' text one that old (the pod as it
// was) or another pod already holds, where they read the same.
func (ts *conditionTexts) share(f, old *Facts) {
	if f == nil {
		return
	}
	for i := range f.Conditions {
		c := &f.Conditions[i]
		if old != nil {
			if t := old.text(i); t != nil && *t == *c.text {
				c.text = t // most records of a pod change no condition's text
				continue
			}
		}
		t := c.text
		c.text = shared(&ts.slots[(fnv32(t.typ)^fnv32(t.status)*16777619^fnv32(t.reason)^fnv32(t.message)*31)&255], t,
			func(a, b *conditionText) bool { return *a == *b })
	}
}

// text is the i-th condition's text, nil past the end.
func (f *Facts) text(i int) *conditionText {
	if i >= len(f.Conditions) {
		return nil
	}
	return f.Conditions[i].text
}

var noFactsShape FactsShape

func (f *Facts) shape() *FactsShape {
	if f.FactsShape == nil {
		return &noFactsShape
	}
	return f.FactsShape
}

// own gives f a shape and containers of its own, shared with no other
// pod, so that the dry run can write to them.
func (f *Facts) own() {
	sh := *f.shape()
	f.FactsShape = &sh
	f.Containers = slices.Clone(f.Containers)
	f.SetInitContainers(slices.Clone(f.InitContainers()))
	for _, list := range [][]Container{f.Containers, f.InitContainers()} {
		for i := range list {
			list[i].own()
		}
	}
}

// factsShapes shares facts' shapes across the fleet, as conditionTexts
// shares conditions' text; a fleet has a few (its phases, QoS classes).
type factsShapes struct {
	slots [64]*FactsShape
}

// share makes f's shape one that old (the pod as it was) or another pod
// already holds, where they read the same, and gives f one if it has none
// (a checkpoint's facts without any of the shape's fields).
func (fs *factsShapes) share(f, old *Facts) {
	if f == nil {
		return
	}
	sh := f.shape()
	if old != nil && old.FactsShape != nil && old.FactsShape.same(sh) {
		f.FactsShape = old.FactsShape // most records of a pod are its containers' and conditions'
		return
	}
	h := fnv32(sh.Phase) ^ fnv32(sh.QOSClass)*16777619
	for _, g := range sh.ReadinessGates {
		h = h*31 ^ fnv32(g)
	}
	for _, r := range sh.EnvFieldRefs {
		h = h*131 ^ fnv32(r)
	}
	f.FactsShape = shared(&fs.slots[h&63], sh, (*FactsShape).same)
}

// same: a and b read the same.
func (a *FactsShape) same(b *FactsShape) bool {
	return a.Phase == b.Phase && a.QOSClass == b.QOSClass && slices.Equal(a.ReadinessGates, b.ReadinessGates) &&
		slices.Equal(a.EnvFieldRefs, b.EnvFieldRefs)
}
