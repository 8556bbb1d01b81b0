package journal

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
}

type OwnerRef struct {
	APIVersion string `cbor:"1,keyasint"`
	Kind       string `cbor:"2,keyasint"`
	Name       string `cbor:"3,keyasint"`
	UID        string `cbor:"4,keyasint"`
}

type PodFacts struct {
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
	// SpecHash hashes the parts of the pod spec that cannot change in place
	// (everything but images and resources), so the planner can tell a
	// template change that needs a recreate without holding the spec.
	SpecHash []byte `cbor:"10,keyasint,omitempty"`
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
	// SpecHash hashes the container's spec minus image, resources and
	// resizePolicy (what can change in place) and minus admission-injected
	// service-account mounts: equal hashes mean only in-place fields differ.
	SpecHash []byte `cbor:"14,keyasint,omitempty"`
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
	// Template holds the pod template's containers (name, image, resources)
	// and the template's labels; env and volumes are left out.
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
}

type NodeFacts struct {
	Ready         bool `cbor:"1,keyasint,omitempty"`
	Unschedulable bool `cbor:"2,keyasint,omitempty"`
	// TopologyLabels keeps only topology.kubernetes.io/* and kubernetes.io/hostname.
	TopologyLabels map[string]string `cbor:"3,keyasint,omitempty"`
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
