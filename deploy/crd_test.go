package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
)

var (
	crdOnce sync.Once
	crdErr  error
)

// rollouts applies the CRD once per test binary and returns the
// InPlaceRollout client of a fresh namespace.
func rollouts(t *testing.T) (dynamic.ResourceInterface, string) {
	t.Helper()
	c := cluster.Shared(t)
	crdOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		crdErr = ApplyCRD(ctx, c.Config())
	})
	if crdErr != nil {
		t.Fatalf("applying the CRD: %v", crdErr)
	}
	ns := c.Namespace(t)
	return dynamic.NewForConfigOrDie(c.Config()).Resource(InPlaceRollouts).Namespace(ns), ns
}

// rollout builds an InPlaceRollout named name with the spec given as YAML.
func rollout(t *testing.T, name, spec string) *unstructured.Unstructured {
	t.Helper()
	obj := map[string]any{
		"apiVersion": Group + "/" + Version,
		"kind":       Kind,
		"metadata":   map[string]any{"name": name},
	}
	if spec != "" {
		var s any
		if err := utilyaml.Unmarshal([]byte(spec), &s); err != nil {
			t.Fatalf("test spec is not YAML: %v\n%s", err, spec)
		}
		obj["spec"] = s
	}
	return &unstructured.Unstructured{Object: obj}
}

// strict creates with server-side strict field validation, as kubectl
// does: a field the schema does not know is an error, not silently pruned.
var strict = metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}

func TestCRDEstablished(t *testing.T) {
	c := cluster.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Twice: the second apply is an update of an established CRD and must
	// return as promptly.
	for i := range 2 {
		start := time.Now()
		if err := ApplyCRD(ctx, c.Config()); err != nil {
			t.Fatalf("apply %d: %v", i+1, err)
		}
		t.Logf("apply %d: established after %s", i+1, time.Since(start).Round(time.Millisecond))
	}
	got, err := dynamic.NewForConfigOrDie(c.Config()).Resource(CRDs).Get(ctx, CRDName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	established, refused, summary := crdConditions(got)
	if !established || refused != "" {
		t.Fatalf("conditions: %s", summary)
	}
	names, _, _ := unstructured.NestedMap(got.Object, "status", "acceptedNames")
	if names["kind"] != Kind || names["plural"] != "inplacerollouts" ||
		!equalAny(names["shortNames"], "ipr") || !equalAny(names["categories"], "rollbook") {
		t.Errorf("accepted names: %v", names)
	}
}

func equalAny(v any, want ...string) bool {
	l, ok := v.([]any)
	if !ok || len(l) != len(want) {
		return false
	}
	for i := range l {
		if l[i] != want[i] {
			return false
		}
	}
	return true
}

// wl and sel start a valid spec with a workloadRef and a selector target.
const (
	wl  = "target: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: web}}\n"
	sel = "target: {selector: {matchLabels: {app: web}}}\ncontainers: [{name: app, image: 'registry.example/web:2.0'}]\n"
)

// designExample is the example of DESIGN.md, "What users drive it with".
const designExample = `
target:
  workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: web}
containers:
- name: app
  image: registry.example/web:2.0
  resources: {requests: {cpu: 500m, memory: 256Mi}}
strategy:
  partition: 0
  maxUnavailable: 1
  gracePeriodSeconds: 5
  priority: {weights: [{weight: 100, selector: {matchLabels: {tier: canary}}}]}
  scatter: [{key: topology.kubernetes.io/zone}]
  steps: [{percent: 10, pause: {}}, {percent: 50, pauseSeconds: 300}, {percent: 100}]
  fallback: Recreate
  verifyTimeoutSeconds: 300
  onFailure: Pause
paused: false
`

func TestValidRollouts(t *testing.T) {
	ri, _ := rollouts(t)
	ctx := context.Background()
	cases := []struct{ name, spec string }{
		{"design-example", designExample},
		{"workload-only", wl},
		{"daemonset", "target: {workloadRef: {apiVersion: apps/v1, kind: DaemonSet, name: log-agent}}\n"},
		{"selector", sel},
		{"selector-expressions", `
target:
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [web, api]}
    - {key: example.com/canary, operator: DoesNotExist}
containers:
- {name: log-shipper, image: 'registry.example/shipper@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', skipDrain: true}
- {name: app, resources: {requests: {cpu: '1', memory: 1Gi}, limits: {memory: 2Gi}}}
requireReadinessGate: true
`},
		{"percentages", wl + `strategy: {partition: "0%", maxUnavailable: "100%", steps: [{percent: 100}]}`},
		{"percentages-leading-zero", wl + `strategy: {partition: "100%", maxUnavailable: "05%"}`},
		{"bounds", wl + `
strategy:
  partition: 1000
  maxUnavailable: 1
  gracePeriodSeconds: 3600
  verifyTimeoutSeconds: 1
  priority: {orderKey: example.com/order}
  fallback: Never
  onFailure: Rollback
  steps: [{percent: 1, pauseSeconds: 604800}, {percent: 99, pause: {}}, {percent: 100, pause: {}}]
approvedSteps: 2
paused: true
`},
		{"empty-weight-selector", wl + `strategy: {priority: {weights: [{weight: 1, selector: {}}]}}`},
		// A workload's container exempt from the drain without pinning its
		// image: the template still says which image it runs.
		{"workload-skipdrain-only", wl + `containers: [{name: log, skipDrain: true}]`},
		{"analysis", wl + `
strategy:
  onFailure: Rollback
  steps:
  - percent: 10
    analysis:
      checks:
      - name: error-ratio
        prometheus: {address: "http://prometheus.monitoring:9090", query: "sum(rate(errors[1m]))"}
        successCondition: result < 0.05
        intervalSeconds: 30
        passes: 3
        failureLimit: 1
        errorLimit: 2
      - name: health
        web: {url: "https://web.shop/health", method: POST, body: '{"deep": true}', jsonPath: "{.status}", timeoutSeconds: 5}
        successCondition: result == "ok"
  - percent: 100
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ri.Create(ctx, rollout(t, tc.name, tc.spec), strict)
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			// What the apiserver stored must decode into the Go types
			// the controller folds, with no field left over.
			b, err := json.Marshal(got.Object["spec"])
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			var spec projections.RolloutSpec
			if err := dec.Decode(&spec); err != nil {
				t.Fatalf("stored spec does not decode into projections.RolloutSpec: %v\n%s", err, b)
			}
		})
	}
}

// TestDefaults: the defaults the Go comments promise are written into the
// object, so what the controller journals says what it will do.
func TestDefaults(t *testing.T) {
	ri, _ := rollouts(t)
	got, err := ri.Create(context.Background(), rollout(t, "defaults", wl), strict)
	if err != nil {
		t.Fatal(err)
	}
	strategy, _, _ := unstructured.NestedMap(got.Object, "spec", "strategy")
	want := map[string]any{"maxUnavailable": int64(1), "fallback": "Recreate", "onFailure": "Pause"}
	for k, v := range want {
		if strategy[k] != v {
			t.Errorf("spec.strategy.%s = %#v, want %#v (strategy: %v)", k, strategy[k], v, strategy)
		}
	}
	if _, ok := strategy["partition"]; ok {
		t.Errorf("partition defaulted: %v", strategy)
	}
}

// TestInvalidRollouts: each malformed rollout is refused by the apiserver
// with a message that says what to fix.
func TestInvalidRollouts(t *testing.T) {
	ri, _ := rollouts(t)
	ctx := context.Background()
	const noSpec = "\x00" // marks a rollout without a spec at all
	cases := []struct {
		name string
		spec string
		// want are fragments of the error message, all required.
		want []string
	}{
		// Target.
		{"no-spec", noSpec, []string{"spec: Required value"}},
		{"no-target", "paused: true", []string{"spec.target: Required value"}},
		{"empty-target", "target: {}", []string{"set one of target.workloadRef (a StatefulSet or DaemonSet) or target.selector"}},
		{"both-targets", "target: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: web}, selector: {matchLabels: {app: web}}}\ncontainers: [{name: app, image: web:2}]",
			[]string{"set only one of target.workloadRef and target.selector, not both"}},
		{"workload-kind-deployment", "target: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}}",
			[]string{`spec.target.workloadRef.kind: Unsupported value: "Deployment"`, `"StatefulSet", "DaemonSet"`}},
		{"workload-apiversion", "target: {workloadRef: {apiVersion: apps/v1beta2, kind: StatefulSet, name: web}}",
			[]string{`spec.target.workloadRef.apiVersion: Unsupported value: "apps/v1beta2"`, `"apps/v1"`}},
		{"workload-no-name", "target: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet}}",
			[]string{"spec.target.workloadRef.name: Required value"}},
		{"workload-bad-name", "target: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: Web_1}}",
			[]string{"spec.target.workloadRef.name", "must be a valid object name"}},
		{"selector-empty", "target: {selector: {}}\ncontainers: [{name: app, image: web:2}]",
			[]string{"spec.target.selector", "must not be empty", "give matchLabels or matchExpressions"}},
		{"selector-without-containers", "target: {selector: {matchLabels: {app: web}}}",
			[]string{"spec.containers", "required with a selector target"}},
		{"selector-empty-containers", "target: {selector: {matchLabels: {app: web}}}\ncontainers: []",
			[]string{"spec.containers", "required with a selector target"}},
		{"selector-in-without-values", "target: {selector: {matchExpressions: [{key: app, operator: In}]}}\ncontainers: [{name: app, image: web:2}]",
			[]string{"operator In needs at least one value"}},
		{"selector-exists-with-values", "target: {selector: {matchExpressions: [{key: app, operator: Exists, values: [web]}]}}\ncontainers: [{name: app, image: web:2}]",
			[]string{"operator Exists takes no values"}},
		{"selector-bad-operator", "target: {selector: {matchExpressions: [{key: app, operator: Equals, values: [web]}]}}\ncontainers: [{name: app, image: web:2}]",
			[]string{`operator: Unsupported value: "Equals"`}},
		{"selector-bad-label-value", "target: {selector: {matchLabels: {app: 'web server'}}}\ncontainers: [{name: app, image: web:2}]",
			[]string{"spec.target.selector.matchLabels", "must have valid label keys"}},
		{"selector-bad-key", "target: {selector: {matchExpressions: [{key: 'not a key', operator: Exists}]}}\ncontainers: [{name: app, image: web:2}]",
			[]string{"key must be a label key"}},

		// Containers.
		{"duplicate-container", wl + "containers: [{name: app, image: web:2}, {name: app, image: web:3}]",
			[]string{"spec.containers[1]: Duplicate value", `"name":"app"`}},
		{"container-no-change", wl + "containers: [{name: app}]",
			[]string{"container app: set image, resources or skipDrain"}},
		{"container-skipdrain-false-only", wl + "containers: [{name: app, skipDrain: false}]",
			[]string{"container app: set image, resources or skipDrain"}},
		{"selector-skipdrain-only", "target: {selector: {matchLabels: {app: web}}}\ncontainers: [{name: log, skipDrain: true}]",
			[]string{"spec.containers is required with a selector target"}},
		{"container-no-name", wl + "containers: [{image: web:2}]",
			[]string{"spec.containers[0].name: Required value"}},
		{"container-bad-name", wl + "containers: [{name: App_1, image: web:2}]",
			[]string{"container name must be a DNS label"}},
		{"image-empty", wl + "containers: [{name: app, image: ''}]",
			[]string{"spec.containers[0].image", "at least 1 chars long"}},
		{"image-whitespace", wl + "containers: [{name: app, image: 'web: 2'}]",
			[]string{"image must not contain whitespace"}},
		{"resources-empty", wl + "containers: [{name: app, resources: {}}]",
			[]string{"resources must set requests, limits or both"}},
		{"resources-not-resizable", wl + "containers: [{name: app, resources: {requests: {ephemeral-storage: 1Gi}}}]",
			[]string{"only cpu and memory can be resized in place"}},
		{"resources-not-quantity", wl + "containers: [{name: app, resources: {requests: {cpu: lots}}}]",
			[]string{"spec.containers[0].resources.requests[cpu]", `quantity written as a string, like "500m"`}},
		{"resources-negative", wl + "containers: [{name: app, resources: {limits: {memory: -1Gi}}}]",
			[]string{"spec.containers[0].resources.limits[memory]", "must be a non-negative quantity"}},
		{"resources-number", wl + "containers: [{name: app, resources: {requests: {cpu: 1}}}]",
			[]string{"spec.containers[0].resources.requests.cpu", "must be of type string"}},
		{"request-over-limit", wl + "containers: [{name: app, resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}}]",
			[]string{"a resource request must not exceed its limit"}},

		// Strategy: partition and maxUnavailable.
		{"partition-negative", wl + "strategy: {partition: -1}", []string{"spec.strategy.partition", "partition must not be negative"}},
		{"partition-150-percent", wl + `strategy: {partition: "150%"}`, []string{"spec.strategy.partition", "percentage from 0% to 100%"}},
		{"partition-abc", wl + `strategy: {partition: "abc"}`, []string{"spec.strategy.partition", `a count (0 or more) or a percentage`}},
		{"partition-fraction", wl + `strategy: {partition: "12.5%"}`, []string{"spec.strategy.partition", `such as "20%"`}},
		{"maxunavailable-abc", wl + `strategy: {maxUnavailable: "abc"}`, []string{"spec.strategy.maxUnavailable", `a count (1 or more) or a percentage from 1% to 100%`}},
		{"maxunavailable-zero", wl + "strategy: {maxUnavailable: 0}", []string{"spec.strategy.maxUnavailable", "must be at least 1: 0 would never update a pod"}},
		{"maxunavailable-zero-percent", wl + `strategy: {maxUnavailable: "0%"}`, []string{"maxUnavailable must not be 0%"}},
		{"maxunavailable-negative", wl + "strategy: {maxUnavailable: -3}", []string{"maxUnavailable must be at least 1: it cannot be negative"}},
		{"maxunavailable-101-percent", wl + `strategy: {maxUnavailable: "101%"}`, []string{"percentage from 1% to 100%"}},
		{"maxunavailable-float", wl + "strategy: {maxUnavailable: 1.5}", []string{"spec.strategy.maxUnavailable"}},

		// Strategy: timings.
		{"grace-negative", wl + "strategy: {gracePeriodSeconds: -1}", []string{"spec.strategy.gracePeriodSeconds", "greater than or equal to 0"}},
		{"grace-too-long", wl + "strategy: {gracePeriodSeconds: 3601}", []string{"spec.strategy.gracePeriodSeconds", "less than or equal to 3600"}},
		{"verify-zero", wl + "strategy: {verifyTimeoutSeconds: 0}", []string{"spec.strategy.verifyTimeoutSeconds", "greater than or equal to 1"}},
		{"verify-too-long", wl + "strategy: {verifyTimeoutSeconds: 86401}", []string{"spec.strategy.verifyTimeoutSeconds", "less than or equal to 86400"}},

		// Strategy: steps.
		{"steps-decreasing", wl + "strategy: {steps: [{percent: 50}, {percent: 10}, {percent: 100}]}", []string{"spec.strategy.steps", "strictly increasing percent order"}},
		{"steps-repeated", wl + "strategy: {steps: [{percent: 50}, {percent: 50}, {percent: 100}]}", []string{"strictly increasing percent order"}},
		{"step-zero", wl + "strategy: {steps: [{percent: 0}, {percent: 100}]}", []string{"spec.strategy.steps[0].percent", "greater than or equal to 1"}},
		{"step-over-100", wl + "strategy: {steps: [{percent: 50}, {percent: 101}]}", []string{"spec.strategy.steps[1].percent", "less than or equal to 100"}},
		{"steps-not-ending-at-100", wl + "strategy: {steps: [{percent: 10}, {percent: 50}]}", []string{"the last step must have percent 100"}},
		{"step-no-percent", wl + "strategy: {steps: [{pauseSeconds: 5}, {percent: 100}]}", []string{"spec.strategy.steps[0].percent: Required value"}},
		{"step-pause-both", wl + "strategy: {steps: [{percent: 10, pause: {}, pauseSeconds: 60}, {percent: 100}]}",
			[]string{"spec.strategy.steps[0]", "pause (hold until approved) or pauseSeconds (hold for a while), not both"}},
		{"step-pause-zero-seconds", wl + "strategy: {steps: [{percent: 10, pauseSeconds: 0}, {percent: 100}]}", []string{"spec.strategy.steps[0].pauseSeconds", "greater than or equal to 1"}},
		{"steps-too-many", wl + "strategy: {steps: [" + manySteps(21) + "]}", []string{"spec.strategy.steps", "must have at most 20 items"}},

		// Strategy: enums.
		{"fallback-sometimes", wl + "strategy: {fallback: Sometimes}", []string{`spec.strategy.fallback: Unsupported value: "Sometimes"`, `"Recreate", "Never"`}},
		{"onfailure-explode", wl + "strategy: {onFailure: Explode}", []string{`spec.strategy.onFailure: Unsupported value: "Explode"`, `"Pause", "Rollback"`}},

		// Strategy: priority and scatter.
		{"priority-both", wl + "strategy: {priority: {orderKey: rank, weights: [{weight: 10, selector: {matchLabels: {tier: canary}}}]}}",
			[]string{"spec.strategy.priority", "exactly one of weights and orderKey"}},
		{"priority-neither", wl + "strategy: {priority: {}}", []string{"exactly one of weights and orderKey"}},
		{"priority-weight-zero", wl + "strategy: {priority: {weights: [{weight: 0, selector: {}}]}}", []string{"spec.strategy.priority.weights[0].weight", "greater than or equal to 1"}},
		{"priority-weight-no-selector", wl + "strategy: {priority: {weights: [{weight: 5}]}}", []string{"spec.strategy.priority.weights[0].selector: Required value"}},
		{"priority-bad-orderkey", wl + "strategy: {priority: {orderKey: 'not a label!'}}", []string{"orderKey must be a label key"}},
		{"scatter-empty-key", wl + "strategy: {scatter: [{key: ''}]}", []string{"spec.strategy.scatter[0].key", "at least 1 chars long"}},
		{"scatter-duplicate-key", wl + "strategy: {scatter: [{key: zone}, {key: zone}]}", []string{"spec.strategy.scatter[1]: Duplicate value", `"key":"zone"`}},
		{"scatter-bad-key", wl + "strategy: {scatter: [{key: 'a zone'}]}", []string{"scatter key must be a node label key"}},

		// The rest of the spec.
		{"approved-negative", wl + "approvedSteps: -1", []string{"spec.approvedSteps", "greater than or equal to 0"}},
		{"approved-over-int32", wl + "approvedSteps: 3000000000", []string{"spec.approvedSteps", "format int32"}},
		{"partition-over-int32", wl + "strategy: {partition: 3000000000}", []string{"spec.strategy.partition", "partition must be at most 2147483647"}},
		{"maxunavailable-over-int32", wl + "strategy: {maxUnavailable: 3000000000}", []string{"spec.strategy.maxUnavailable", "at most 2147483647"}},
		{"unknown-field", wl + "foo: bar", []string{`unknown field "spec.foo"`}},
		{"misspelt-field", wl + "containers: [{name: app, imag: web:2}]", []string{`unknown field "spec.containers[0].imag"`}},
		{"pause-with-duration", wl + "strategy: {steps: [{percent: 10, pause: {duration: 60}}, {percent: 100}]}", []string{`unknown field "spec.strategy.steps[0].pause.duration"`}},
		{"paused-string", wl + "paused: 'yes'", []string{"spec.paused", "must be of type boolean"}},
		{"containers-string", wl + "containers: app", []string{"spec.containers", "must be of type array"}},
		{"grace-string", wl + "strategy: {gracePeriodSeconds: '5'}", []string{"spec.strategy.gracePeriodSeconds", "must be of type integer"}},

		// Analysis.
		{"analysis-both-providers", wl + "strategy: {steps: [{percent: 100, analysis: {checks: [{name: c, prometheus: {address: 'http://p:9090', query: up}, web: {url: 'http://w/'}, successCondition: 'true'}]}}]}",
			[]string{"a check sets exactly one of prometheus and web"}},
		{"analysis-no-provider", wl + "strategy: {steps: [{percent: 100, analysis: {checks: [{name: c, successCondition: 'true'}]}}]}",
			[]string{"a check sets exactly one of prometheus and web"}},
		{"analysis-no-condition", wl + "strategy: {steps: [{percent: 100, analysis: {checks: [{name: c, prometheus: {address: 'http://p:9090', query: up}}]}}]}",
			[]string{"successCondition: Required value"}},
		{"analysis-duplicate-check", wl + "strategy: {steps: [{percent: 100, analysis: {checks: [{name: c, prometheus: {address: 'http://p:9090', query: up}, successCondition: 'true'}, {name: c, prometheus: {address: 'http://p:9090', query: up}, successCondition: 'true'}]}}]}",
			[]string{"Duplicate value", `"name":"c"`}},
		{"analysis-address-not-http", wl + "strategy: {steps: [{percent: 100, analysis: {checks: [{name: c, prometheus: {address: 'file:///etc/passwd', query: up}, successCondition: 'true'}]}}]}",
			[]string{"spec.strategy.steps[0].analysis.checks[0].prometheus.address", "should match '^https?://'"}},
		{"analysis-interval-zero", wl + "strategy: {steps: [{percent: 100, analysis: {checks: [{name: c, web: {url: 'http://w/'}, successCondition: 'true', intervalSeconds: 0}]}}]}",
			[]string{"intervalSeconds", "greater than or equal to 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			if spec == noSpec {
				spec = ""
			}
			_, err := ri.Create(ctx, rollout(t, tc.name, spec), strict)
			if err == nil {
				t.Fatalf("accepted; want an error with %q", tc.want)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Errorf("error is not Invalid or BadRequest: %v", err)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if len(cases) < 30 {
		t.Errorf("only %d malformed rollouts", len(cases))
	}
}

func manySteps(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		// Strictly increasing, ending at 100 only when n divides it.
		b.WriteString("{percent: " + itoa(i*100/n) + "}")
	}
	return b.String()
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestTargetImmutable: a rollout's target cannot move; its other fields can.
func TestTargetImmutable(t *testing.T) {
	ri, _ := rollouts(t)
	ctx := context.Background()
	if _, err := ri.Create(ctx, rollout(t, "web", sel), strict); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"spec":{"target":{"selector":{"matchLabels":{"app":"api"}}}}}`)
	_, err := ri.Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{})
	if err == nil || !strings.Contains(err.Error(), "target is immutable; create a new InPlaceRollout") {
		t.Fatalf("retargeting: got %v, want target is immutable", err)
	}
	patch = []byte(`{"spec":{"paused":true,"containers":[{"name":"app","image":"registry.example/web:2.1"}]}}`)
	if _, err := ri.Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("pausing and changing the image: %v", err)
	}
}

// TestStatusSubresource: status is written only through the subresource, and
// the printer columns show it in `kubectl get ipr`.
func TestStatusSubresource(t *testing.T) {
	ri, ns := rollouts(t)
	c := cluster.Shared(t)
	ctx := context.Background()
	obj := rollout(t, "web", designExample)
	obj.Object["status"] = map[string]any{"phase": "Succeeded"}
	created, err := ri.Create(ctx, obj, strict)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := created.Object["status"]; ok {
		t.Errorf("status set through the main resource: %v", created.Object["status"])
	}
	status := `{"status":{"observedGeneration":1,"phase":"Progressing","replicas":10,"updated":4,"updatedReady":3,
		"unavailable":1,"failed":0,"currentStep":1,"stepPausedAt":"2026-01-02T03:04:05Z","journalSequence":812,"traceID":"4bf92f3577b34da6a3ce929d0e0e4736",
		"targetRevision":"5d8f7c9b","conditions":[{"type":"Progressing","status":"True","reason":"StepReached",
		"message":"step 1 of 3","lastTransitionTime":"2026-01-02T03:04:05Z","observedGeneration":1}]}}`
	got, err := ri.Patch(ctx, "web", types.MergePatchType, []byte(status), metav1.PatchOptions{FieldValidation: metav1.FieldValidationStrict}, "status")
	if err != nil {
		t.Fatalf("status patch: %v", err)
	}
	// The stored status decodes into the Go type the controller writes.
	b, _ := json.Marshal(got.Object["status"])
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var st projections.RolloutStatus
	if err := dec.Decode(&st); err != nil || st.Updated != 4 || len(st.Conditions) != 1 {
		t.Fatalf("stored status %s: %+v, %v", b, st, err)
	}
	bad := `{"status":{"conditions":[{"type":"Progressing","status":"Maybe","reason":"x","message":"","lastTransitionTime":"2026-01-02T03:04:05Z"}]}}`
	if _, err := ri.Patch(ctx, "web", types.MergePatchType, []byte(bad), metav1.PatchOptions{}, "status"); err == nil || !strings.Contains(err.Error(), `Unsupported value: "Maybe"`) {
		t.Errorf("condition with status Maybe: got %v", err)
	}

	kubectl := func(args ...string) string {
		t.Helper()
		args = append([]string{"--kubeconfig", c.Kubeconfig, "-n", ns}, args...)
		out, err := exec.Command(c.Bins.Kubectl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, args := range [][]string{{"get", "ipr"}, {"get", "inplacerollouts"}, {"get", "rollbook"}} {
		out := kubectl(args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("kubectl %s:\n%s", strings.Join(args, " "), out)
		}
		if h := strings.Fields(lines[0]); strings.Join(h, " ") != "NAME PHASE UPDATED REPLICAS STEP AGE" {
			t.Errorf("kubectl %s: header %q", strings.Join(args, " "), lines[0])
		}
		if f := strings.Fields(lines[1]); len(f) != 6 || strings.Join(f[:5], " ") != "web Progressing 4 10 1" {
			t.Errorf("kubectl %s: row %q", strings.Join(args, " "), lines[1])
		}
	}
	// The schema's descriptions are what `kubectl explain` shows.
	if out := kubectl("explain", "ipr.spec.strategy.maxUnavailable"); !strings.Contains(out, "percentage") {
		t.Errorf("kubectl explain shows no description:\n%s", out)
	}
	out := kubectl("get", "ipr", "-o", "wide")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if h := strings.Join(strings.Fields(lines[0]), " "); h != "NAME PHASE UPDATED REPLICAS STEP READY UNAVAILABLE FAILED PAUSED AGE" {
		t.Errorf("wide header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); len(f) != 10 || strings.Join(f[:9], " ") != "web Progressing 4 10 1 3 1 0 false" {
		t.Errorf("wide row %q", lines[1])
	}
}
