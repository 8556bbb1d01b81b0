package projections

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RolloutSpec is InPlaceRollout.spec (rollbook.dev/v1alpha1), as users
// write it. deploy/crd.yaml is its schema; keep the two in step.
type RolloutSpec struct {
	Target Target `json:"target"`
	// Containers is the desired state per container name: required with a
	// selector target, overrides on top of the workload's template with a
	// workloadRef target.
	Containers []ContainerTarget `json:"containers,omitempty"`
	Strategy   Strategy          `json:"strategy,omitempty"`
	Paused     bool              `json:"paused,omitempty"`
	// Abort stops the rollout and releases every gate at once, pods in
	// the middle of an update included: the rollout lets go of its pods
	// as a deleted one does, but stays, with its status and history,
	// until Abort is unset.
	Abort bool `json:"abort,omitempty"`
	// ApprovedSteps releases indefinite step pauses: step i (0-based) with
	// `pause: {}` holds until ApprovedSteps > i.
	ApprovedSteps int32 `json:"approvedSteps,omitempty"`
	// RequireReadinessGate skips pods that do not declare the
	// rollbook.dev/InPlaceUpdateReady readiness gate instead of updating
	// them with a NoReadinessGate warning.
	RequireReadinessGate bool `json:"requireReadinessGate,omitempty"`
	// Lifecycle holds each pod's update until another controller (a hook
	// controller, say an operator draining a database member) releases
	// it: before the patch and after the update.
	Lifecycle *Lifecycle `json:"lifecycle,omitempty"`
}

// Lifecycle names the hooks of a pod's update. The contract (README,
// "Lifecycle hooks"): Rollbook sets the pod label rollbook.dev/hook to
// pre-update in the write that gates the pod, and to post-update in the
// write that ungates it once verified; in that same write it clears the
// hook's release (removes the label, sets the condition False), so a
// release given for an earlier update never counts for this one. The hook
// controller acts on the marker and gives the release when done.
type Lifecycle struct {
	// PreUpdate holds a gated pod (out of Service endpoints) before its
	// patch until released.
	PreUpdate *LifecycleHook `json:"preUpdate,omitempty"`
	// PostUpdate holds a pod verified and back in Service endpoints until
	// released; until then its update is not finished: it counts against
	// maxUnavailable and the rollout does not succeed.
	PostUpdate *LifecycleHook `json:"postUpdate,omitempty"`
}

// LifecycleHook is what releases a pod held at one hook: exactly one of a
// label and a condition the hook controller sets on the pod.
type LifecycleHook struct {
	// Label releases the pod when it carries Key=Value.
	Label *HookLabel `json:"label,omitempty"`
	// Condition releases the pod when its status has a condition of this
	// type with status True.
	Condition string `json:"condition,omitempty"`
	// TimeoutSeconds bounds the wait (default 600), counted from the write
	// that set the marker.
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
	// OnTimeout is Pause (default: no new pod starts, the pod stays held
	// until released) or Proceed (the pod goes on without the release).
	OnTimeout string `json:"onTimeout,omitempty"`
}

// HookLabel is a pod label key and the value that releases the pod.
type HookLabel struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Target names the pods: exactly one of WorkloadRef and Selector.
type Target struct {
	WorkloadRef *WorkloadRef          `json:"workloadRef,omitempty"`
	Selector    *metav1.LabelSelector `json:"selector,omitempty"`
}

// WorkloadRef points at a StatefulSet or DaemonSet with updateStrategy OnDelete.
type WorkloadRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
}

// ContainerTarget is the desired image and resources of one container
// (or init container) by name.
type ContainerTarget struct {
	Name      string     `json:"name"`
	Image     string     `json:"image,omitempty"`
	Resources *Resources `json:"resources,omitempty"`
	// SkipDrain: restarting this container alone does not take the pod out
	// of Service endpoints (a log sidecar). A pod whose changed containers
	// all skip the drain is patched without being gated.
	SkipDrain bool `json:"skipDrain,omitempty"`
}

// Resources are CPU and memory quantities as strings ("500m", "256Mi").
type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// Strategy says how fast and in which order pods are updated.
type Strategy struct {
	// Partition is how many pods (or what share) stay on the old version.
	Partition *intstr.IntOrString `json:"partition,omitempty"`
	// MaxUnavailable bounds the pods gated, updating or not ready at once
	// (default 1). Pods already unavailable count against it.
	MaxUnavailable     *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	GracePeriodSeconds *int32              `json:"gracePeriodSeconds,omitempty"`
	Priority           *Priority           `json:"priority,omitempty"`
	Scatter            []ScatterTerm       `json:"scatter,omitempty"`
	Steps              []Step              `json:"steps,omitempty"`
	// Fallback is Recreate (default) or Never, for changes that cannot be
	// applied in place.
	Fallback             string `json:"fallback,omitempty"`
	VerifyTimeoutSeconds *int32 `json:"verifyTimeoutSeconds,omitempty"`
	// OnFailure is Pause (default) or Rollback.
	OnFailure string `json:"onFailure,omitempty"`
}

// Priority orders pods: by weights of matching selectors (higher first), or
// by a label's value (OrderKey, ascending, numbers compared as numbers).
type Priority struct {
	Weights  []WeightTerm `json:"weights,omitempty"`
	OrderKey string       `json:"orderKey,omitempty"`
}

type WeightTerm struct {
	Weight   int32                `json:"weight"`
	Selector metav1.LabelSelector `json:"selector"`
}

// ScatterTerm spreads each batch over the values of a node label.
type ScatterTerm struct {
	Key string `json:"key"`
}

// Step caps the share of pods updated; an analysis and a pause hold the
// rollout after it.
type Step struct {
	Percent      int32  `json:"percent"`
	Pause        *Pause `json:"pause,omitempty"`
	PauseSeconds *int32 `json:"pauseSeconds,omitempty"`
	// Analysis must pass before the rollout goes past this step; its
	// failure applies strategy.onFailure.
	Analysis *Analysis `json:"analysis,omitempty"`
}

// Analysis is what a step must prove once its pods are updated: every
// check passes. Approving the step (spec.approvedSteps) promotes past it
// whatever the checks say.
type Analysis struct {
	Checks []AnalysisCheck `json:"checks"`
}

// AnalysisCheck is one measurement repeated until it passes or fails:
// it passes after Passes measurements met SuccessCondition since the last
// that did not, and fails when more than FailureLimit did not, or more
// than ErrorLimit gave no value. Exactly one of Prometheus and Web.
type AnalysisCheck struct {
	Name       string           `json:"name"`
	Prometheus *PrometheusCheck `json:"prometheus,omitempty"`
	Web        *WebCheck        `json:"web,omitempty"`
	// SuccessCondition is a CEL expression over `result`, the measured
	// value: e.g. "result < 0.05".
	SuccessCondition string `json:"successCondition"`
	IntervalSeconds  *int32 `json:"intervalSeconds,omitempty"` // default 10
	Passes           *int32 `json:"passes,omitempty"`          // default 1
	FailureLimit     *int32 `json:"failureLimit,omitempty"`    // default 0
	ErrorLimit       *int32 `json:"errorLimit,omitempty"`      // default 3
}

// PrometheusCheck is an instant query against a Prometheus HTTP API.
type PrometheusCheck struct {
	Address string `json:"address"`
	Query   string `json:"query"`
}

// WebCheck is an HTTP request whose JSON response (or the part JSONPath
// selects) is the measured value.
type WebCheck struct {
	URL            string `json:"url"`
	Method         string `json:"method,omitempty"` // GET (default) or POST
	Body           string `json:"body,omitempty"`
	JSONPath       string `json:"jsonPath,omitempty"`
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"` // default 10
}

// Pause with no duration holds until approved (RolloutSpec.ApprovedSteps).
type Pause struct{}

// RolloutStatus is InPlaceRollout.status.
type RolloutStatus struct {
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Phase              string `json:"phase,omitempty"`
	Replicas           int32  `json:"replicas"`
	Updated            int32  `json:"updated"`
	UpdatedReady       int32  `json:"updatedReady"`
	Unavailable        int32  `json:"unavailable"`
	Failed             int32  `json:"failed"`
	CurrentStep        int32  `json:"currentStep"`
	// StepPausedAt is when the current step's pause began (its duration
	// counts from here); unset when not pausing at a step.
	StepPausedAt *metav1.Time `json:"stepPausedAt,omitempty"`
	// ApprovedStepsBase is spec.approvedSteps when the current target
	// revision began: approvals given for an earlier revision do not
	// release this one's pauses (spec.approvedSteps - base do).
	ApprovedStepsBase int32 `json:"approvedStepsBase,omitempty"`
	// TraceParent is the W3C traceparent of the rollout's root span, for
	// tools that join the trace. NB: in the status, not an annotation: the
	// status is written anyway, and an annotation would need a metadata
	// write and RBAC to patch the rollout itself.
	TraceParent     string             `json:"traceParent,omitempty"`
	Conditions      []metav1.Condition `json:"conditions,omitempty"`
	JournalSequence uint64             `json:"journalSequence,omitempty"`
	TraceID         string             `json:"traceID,omitempty"`
	// TargetRevision is a hash of the desired container state, the value
	// written to pods' rollbook.dev/revision annotation.
	TargetRevision string `json:"targetRevision,omitempty"`
	// Analysis is the current step's analysis: each check's measurements
	// so far and its verdict.
	Analysis *AnalysisStatus `json:"analysis,omitempty"`
	// WorkloadRevision and WorkloadGeneration name the workloadRef's
	// template this status covers: its ControllerRevision (a StatefulSet's
	// status.updateRevision) and its metadata.generation. Right after a
	// template change the status still describes the old one; a reader
	// waiting for the new template's outcome waits until
	// WorkloadGeneration reaches the workload's generation. Empty for a
	// selector target, whose spec is the rollout's own (ObservedGeneration).
	WorkloadRevision   string `json:"workloadRevision,omitempty"`
	WorkloadGeneration int64  `json:"workloadGeneration,omitempty"`
}

// AnalysisStatus is a step's analysis as the journal's measurements
// have it.
type AnalysisStatus struct {
	Step   int32         `json:"step"`
	Phase  string        `json:"phase"` // one of the Analysis* values
	Checks []CheckStatus `json:"checks,omitempty"`
}

// CheckStatus is one check of a step's analysis.
type CheckStatus struct {
	Name         string `json:"name"`
	Phase        string `json:"phase"`
	Measurements int32  `json:"measurements"`
	Passes       int32  `json:"passes"`
	Failures     int32  `json:"failures"`
	Errors       int32  `json:"errors"`
	LastValue    string `json:"lastValue,omitempty"`
	LastVerdict  string `json:"lastVerdict,omitempty"`
	Message      string `json:"message,omitempty"`
}

// Phases of an analysis and of each of its checks.
const (
	AnalysisRunning = "Running"
	AnalysisPassed  = "Passed"
	AnalysisFailed  = "Failed"
)

// Phases of a rollout.
const (
	PhasePending     = "Pending"
	PhaseProgressing = "Progressing"
	PhasePaused      = "Paused"
	PhaseSucceeded   = "Succeeded"
	PhaseFailed      = "Failed"
	PhaseRolledBack  = "RolledBack"
)

// Terminal reports whether a rollout in phase has ended: Succeeded,
// Failed or RolledBack.
func Terminal(phase string) bool {
	return phase == PhaseSucceeded || phase == PhaseFailed || phase == PhaseRolledBack
}
