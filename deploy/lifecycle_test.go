package deploy

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestLifecycleHooks: spec.lifecycle is accepted in the forms the README
// documents, defaulted (timeout, onTimeout), and refused with a message
// that says what to fix when it names something Rollbook would overwrite.
func TestLifecycleHooks(t *testing.T) {
	ri, _ := rollouts(t)
	ctx := context.Background()

	got, err := ri.Create(ctx, rollout(t, "hooks", wl+`
lifecycle:
  preUpdate: {label: {key: example.com/drained, value: "true"}, timeoutSeconds: 120, onTimeout: Proceed}
  postUpdate: {condition: example.com/Rejoined}
`), strict)
	if err != nil {
		t.Fatalf("rejected: %v", err)
	}
	post, _, _ := unstructured.NestedMap(got.Object, "spec", "lifecycle", "postUpdate")
	if post["timeoutSeconds"] != int64(600) || post["onTimeout"] != "Pause" {
		t.Errorf("postUpdate not defaulted to timeoutSeconds 600, onTimeout Pause: %v", post)
	}

	cases := []struct {
		name, spec string
		want       []string
	}{
		{"empty", "lifecycle: {}", []string{"lifecycle must set preUpdate, postUpdate or both"}},
		{"no-release", "lifecycle: {preUpdate: {timeoutSeconds: 5}}", []string{"preUpdate must set exactly one of label", "and condition"}},
		{"both-releases", "lifecycle: {postUpdate: {label: {key: example.com/ok, value: 'yes'}, condition: example.com/Ok}}",
			[]string{"postUpdate must set exactly one of label"}},
		{"label-no-value", "lifecycle: {preUpdate: {label: {key: example.com/drained}}}", []string{"spec.lifecycle.preUpdate.label.value: Required value"}},
		{"label-bad-key", "lifecycle: {preUpdate: {label: {key: 'not a key', value: 'true'}}}", []string{"label.key must be a label key"}},
		{"label-bad-value", "lifecycle: {preUpdate: {label: {key: example.com/drained, value: 'yes please'}}}", []string{"label.value must be a label value"}},
		{"label-ours", "lifecycle: {preUpdate: {label: {key: rollbook.dev/hook, value: done}}}",
			[]string{"label.key names a label Rollbook or a workload controller owns", "such as example.com/drained"}},
		{"label-revision", "lifecycle: {postUpdate: {label: {key: controller-revision-hash, value: web-1}}}",
			[]string{"label.key names a label Rollbook or a workload controller owns"}},
		{"condition-kubelet", "lifecycle: {preUpdate: {condition: Ready}}", []string{"condition must be a pod condition type of your own with a domain", "example.com/Drained"}},
		{"condition-ours", "lifecycle: {preUpdate: {condition: rollbook.dev/InPlaceUpdateReady}}", []string{"condition must be a pod condition type of your own"}},
		{"timeout-zero", "lifecycle: {preUpdate: {condition: example.com/Drained, timeoutSeconds: 0}}",
			[]string{"spec.lifecycle.preUpdate.timeoutSeconds", "greater than or equal to 1"}},
		{"on-timeout-retry", "lifecycle: {preUpdate: {condition: example.com/Drained, onTimeout: Retry}}",
			[]string{`spec.lifecycle.preUpdate.onTimeout: Unsupported value: "Retry"`, `"Pause", "Proceed"`}},
		{"unknown-hook", "lifecycle: {preDelete: {condition: example.com/Drained}}", []string{`unknown field "spec.lifecycle.preDelete"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ri.Create(ctx, rollout(t, tc.name, wl+tc.spec), strict)
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
}
