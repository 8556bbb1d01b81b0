package journal

import "fmt"

// Observed is the compact form of an object seen on a watch. It holds what
// planning, audit and tracing need and, by construction, never env values,
// volumes, secrets or command lines: ingest copies fields in, it never copies
// objects out.
type Observed struct {
	// Resource is "pods", "statefulsets.apps", "inplacerollouts.rollbook.dev", ...
	Resource        string            `cbor:"1,keyasint"`
	Namespace       string            `cbor:"2,keyasint,omitempty"`
	Name            string            `cbor:"3,keyasint"`
	UID             string            `cbor:"4,keyasint"`
	ResourceVersion string            `cbor:"5,keyasint"`
	Generation      int64             `cbor:"6,keyasint,omitempty"`
	Labels          map[string]string `cbor:"7,keyasint,omitempty"`
	// Annotations keeps only rollbook.dev/* annotations and the few others
	// planning needs; arbitrary annotations can hold secrets.
	Annotations map[string]string `cbor:"8,keyasint,omitempty"`
	Owner       *OwnerRef         `cbor:"9,keyasint,omitempty"`
	// Created and Deleting are Unix nanoseconds (0 = unset).
	Created  int64 `cbor:"10,keyasint,omitempty"`
	Deleting int64 `cbor:"11,keyasint,omitempty"`
	// ObjectHash is a SHA-256 of the full object as served, for audit: it
	// proves what was seen without keeping it.
	ObjectHash []byte `cbor:"12,keyasint,omitempty"`

	Pod      *PodFacts      `cbor:"20,keyasint,omitempty"`
	Workload *WorkloadFacts `cbor:"21,keyasint,omitempty"`
	Node     *NodeFacts     `cbor:"22,keyasint,omitempty"`
	// Spec is the object's spec as JSON for kinds whose spec is small and
	// ours (InPlaceRollout); never set for pods or workloads.
	Spec   []byte `cbor:"23,keyasint,omitempty"`
	Status []byte `cbor:"24,keyasint,omitempty"`
	// Deleted marks the object's DELETED watch event: its last state.
	Deleted bool `cbor:"25,keyasint,omitempty"`
	// HasAnnotations says whether the object has any annotation at all
	// (most are not kept): a JSON patch adding one must first create the map.
	HasAnnotations bool `cbor:"26,keyasint,omitempty"`
	// AnnotationKeys lists a pod's annotation keys whose values are not
	// kept, sorted: a JSON patch may remove only a key the pod has.
	AnnotationKeys []string `cbor:"27,keyasint,omitempty"`
	// Revision is a ControllerRevision's number and pod template.
	Revision *RevisionFacts `cbor:"28,keyasint,omitempty"`
	// Truncated says what was left out of an object too large to journal
	// whole (its labels, annotations, spec...): identity and state stay.
	Truncated string `cbor:"29,keyasint,omitempty"`
}

// RevisionFacts is a ControllerRevision of a StatefulSet or DaemonSet: the
// pod template of one revision, which pods carrying its name (or hash) in
// their controller-revision-hash label were created from.
type RevisionFacts struct {
	Revision int64          `cbor:"1,keyasint"`
	Template *TemplateFacts `cbor:"2,keyasint,omitempty"`
}

// TemplateFacts is a pod template reduced to what an in-place update
// compares between two revisions: labels and annotations whole (they are
// applied in place), images and resources whole, and every other field as
// a short hash under its path, so that what changed can be named without
// keeping env values, volumes or commands.
type TemplateFacts struct {
	Labels         map[string]string   `cbor:"1,keyasint,omitempty"`
	Annotations    map[string]string   `cbor:"2,keyasint,omitempty"`
	Containers     []TemplateContainer `cbor:"3,keyasint,omitempty"`
	InitContainers []TemplateContainer `cbor:"4,keyasint,omitempty"`
	// Fields hashes each pod-level spec field other than the container
	// lists, by path ("spec.volumes"); an empty field is absent.
	Fields map[string][]byte `cbor:"5,keyasint,omitempty"`
}

// TemplateContainer is one container of a template.
type TemplateContainer struct {
	Name          string            `cbor:"1,keyasint"`
	Image         string            `cbor:"2,keyasint,omitempty"`
	Requests      map[string]string `cbor:"3,keyasint,omitempty"`
	Limits        map[string]string `cbor:"4,keyasint,omitempty"`
	RestartAlways bool              `cbor:"5,keyasint,omitempty"`
	// Fields hashes each other field of the container by name ("env",
	// "command", "volumeMounts"); an empty field is absent.
	Fields map[string][]byte `cbor:"6,keyasint,omitempty"`
}

type OwnerRef struct {
	APIVersion string `cbor:"1,keyasint"`
	Kind       string `cbor:"2,keyasint"`
	Name       string `cbor:"3,keyasint"`
	UID        string `cbor:"4,keyasint"`
}

type PodFacts struct {
	// SpecHash is no longer written: what changed is decided between
	// revisions (TemplateFacts), not between a pod and its template.
	// An older journal's is read and dropped (Dropped).
	SpecHash       Dropped     `cbor:"10,keyasint,omitempty"`
	NodeName       string      `cbor:"1,keyasint,omitempty"`
	Phase          string      `cbor:"2,keyasint,omitempty"`
	PodIP          string      `cbor:"3,keyasint,omitempty"`
	ReadinessGates []string    `cbor:"4,keyasint,omitempty"`
	Conditions     []Condition `cbor:"5,keyasint,omitempty"`
	Containers     []Container `cbor:"6,keyasint,omitempty"`
	InitContainers []Container `cbor:"7,keyasint,omitempty"`
	QOSClass       string      `cbor:"8,keyasint,omitempty"`
	// EnvFieldRefs lists label/annotation paths that feed env vars through
	// fieldRef ("metadata.labels['x']"): changing those is not in place.
	EnvFieldRefs []string `cbor:"9,keyasint,omitempty"`
}

// Dropped is a field older binaries wrote as a byte string and nothing
// reads any more: it decodes (a journal is never rewritten) and holds
// nothing. A []byte would cost every pod the fold keeps 24 bytes per pod
// and per container, for a field that is always empty.
type Dropped struct{}

// UnmarshalCBOR accepts what the field held, a byte string or null, and
// drops it.
func (*Dropped) UnmarshalCBOR(b []byte) error {
	if len(b) == 0 || (b[0]>>5 != 2 && b[0] != 0xf6) {
		return fmt.Errorf("journal: a dropped field holds %x, not a byte string", b)
	}
	return nil
}

type Condition struct {
	Type    string `cbor:"1,keyasint"`
	Status  string `cbor:"2,keyasint"`
	Reason  string `cbor:"3,keyasint,omitempty"`
	Message string `cbor:"4,keyasint,omitempty"`
	// LastTransition is Unix nanoseconds.
	LastTransition int64 `cbor:"5,keyasint,omitempty"`
}

// Container joins a container's spec (name, image, resources) with its status.
type Container struct {
	Name         string `cbor:"1,keyasint"`
	Image        string `cbor:"2,keyasint"`
	ImageID      string `cbor:"3,keyasint,omitempty"`
	ContainerID  string `cbor:"4,keyasint,omitempty"`
	RestartCount int32  `cbor:"5,keyasint,omitempty"`
	Ready        bool   `cbor:"6,keyasint,omitempty"`
	Started      bool   `cbor:"7,keyasint,omitempty"`
	// State is "running", "waiting:<reason>" or "terminated:<reason>".
	State string `cbor:"8,keyasint,omitempty"`
	// StatusImage is the image the runtime reports, which lags Image after a patch.
	StatusImage string `cbor:"9,keyasint,omitempty"`
	// Requests and Limits as in the spec; Actual* as the status reports.
	Requests       map[string]string `cbor:"10,keyasint,omitempty"`
	Limits         map[string]string `cbor:"11,keyasint,omitempty"`
	ActualRequests map[string]string `cbor:"12,keyasint,omitempty"`
	ActualLimits   map[string]string `cbor:"13,keyasint,omitempty"`
	// SpecHash is no longer written (see PodFacts.SpecHash).
	SpecHash Dropped `cbor:"14,keyasint,omitempty"`
	// Init marks a restartable init container (a native sidecar) when the
	// container is listed among InitContainers.
	RestartAlways bool `cbor:"15,keyasint,omitempty"`
}

type WorkloadFacts struct {
	Kind            string            `cbor:"1,keyasint"`
	UpdateStrategy  string            `cbor:"2,keyasint,omitempty"`
	Replicas        int32             `cbor:"3,keyasint,omitempty"`
	UpdateRevision  string            `cbor:"4,keyasint,omitempty"`
	CurrentRevision string            `cbor:"5,keyasint,omitempty"`
	Selector        map[string]string `cbor:"6,keyasint,omitempty"`
	// TemplateContainers, TemplateInitContainers, TemplateLabels and
	// TemplateSpecHash are no longer written: the planner reads templates
	// from ControllerRevisions. Kept so that older journals decode.
	TemplateContainers     []Container       `cbor:"7,keyasint,omitempty"`
	TemplateInitContainers []Container       `cbor:"8,keyasint,omitempty"`
	TemplateLabels         map[string]string `cbor:"9,keyasint,omitempty"`
	TemplateSpecHash       []byte            `cbor:"10,keyasint,omitempty"`
	ObservedGeneration     int64             `cbor:"11,keyasint,omitempty"`
	UpdatedReplicas        int32             `cbor:"12,keyasint,omitempty"`
	ReadyReplicas          int32             `cbor:"13,keyasint,omitempty"`
	// TemplateGeneration is a DaemonSet's spec.templateGeneration: the
	// DaemonSet counts a pod updated when its pod-template-generation label
	// matches it (DaemonSets publish no update revision in their status).
	TemplateGeneration int64 `cbor:"14,keyasint,omitempty"`
	// Template is a DaemonSet's current pod template, to tell which of its
	// ControllerRevisions is current (a DaemonSet names none in its
	// status). Not set for StatefulSets, whose status names it.
	Template *TemplateFacts `cbor:"15,keyasint,omitempty"`
}

type NodeFacts struct {
	Ready         bool `cbor:"1,keyasint,omitempty"`
	Unschedulable bool `cbor:"2,keyasint,omitempty"`
	// Labels are the node's labels, every one, so that a rollout may
	// scatter over any of them (a rack, an instance type, a pool). A node
	// record too large to journal keeps only topology.kubernetes.io/* and
	// kubernetes.io/hostname. (Journals written before kept only those.)
	Labels map[string]string `cbor:"3,keyasint,omitempty"`
}

// Vanished says an object known to the journal was gone on a relist.
type Vanished struct {
	Resource  string `cbor:"1,keyasint"`
	Namespace string `cbor:"2,keyasint,omitempty"`
	Name      string `cbor:"3,keyasint"`
	UID       string `cbor:"4,keyasint"`
	// LastResourceVersion is the last version the journal had seen.
	LastResourceVersion string `cbor:"5,keyasint"`
	// ListResourceVersion is the relist that found it gone.
	ListResourceVersion string `cbor:"6,keyasint"`
}

// CursorFact is the body of a KindCursor record.
type CursorFact struct {
	Name            string `cbor:"1,keyasint"`
	ResourceVersion string `cbor:"2,keyasint"`
}
