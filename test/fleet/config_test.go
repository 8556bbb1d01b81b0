package fleet_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"rollbook.dev/rollbook/test/fleet"
)

// TestConfig checks the rendered kwok configuration is well-formed YAML
// with the stages the fleet relies on and the delays asked for. (Whether
// the stages behave is what the other tests check against kwok itself.)
func TestConfig(t *testing.T) {
	conf, err := fleet.Config(fleet.Options{ImageChangeDelay: 750 * time.Millisecond, CrashLoopPeriod: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]map[string]any{}
	for doc := range bytes.SplitSeq(conf, []byte("\n---\n")) {
		var obj map[string]any
		js, err := utilyaml.ToJSON(doc)
		if err == nil {
			err = json.Unmarshal(js, &obj)
		}
		if err != nil {
			t.Fatalf("invalid YAML document: %v\n%s", err, doc)
		}
		if obj["kind"] != "Stage" {
			continue
		}
		name := obj["metadata"].(map[string]any)["name"].(string)
		stages[name] = obj["spec"].(map[string]any)
	}
	for _, name := range []string{"node-initialize", "node-heartbeat-with-lease", "pod-delete", "pod-start", "pod-restart",
		"pod-resize", "pod-slowready", "pod-pullbackoff", "pod-crashloop", "pod-sync", "pod-none"} {
		if stages[name] == nil {
			t.Errorf("no stage %s", name)
		}
	}
	delay := func(stage string) any {
		d, _ := stages[stage]["delay"].(map[string]any)
		return d["durationMilliseconds"]
	}
	if got := delay("pod-restart"); got != float64(750) {
		t.Errorf("pod-restart delay %v, want 750", got)
	}
	if got := delay("pod-crashloop"); got != float64(2000) {
		t.Errorf("pod-crashloop delay %v, want 2000", got)
	}
	if !strings.Contains(string(conf), "podPlayStageParallelism: 16") {
		t.Errorf("default parallelism missing:\n%s", conf)
	}
}

func TestImageID(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0f", 32)
	for _, c := range []struct{ image, repo string }{
		{"app:v1", "docker.io/library/app"},
		{"app", "docker.io/library/app"},
		{"team/app:v1", "docker.io/team/app"},
		{"registry.example/team/app:2.0", "registry.example/team/app"},
		{"localhost:5000/app:v1", "localhost:5000/app"},
		{"localhost/app", "localhost/app"},
	} {
		got := fleet.ImageID(c.image)
		if !strings.HasPrefix(got, c.repo+"@sha256:") || len(got) != len(c.repo)+len("@sha256:")+64 {
			t.Errorf("ImageID(%q) = %s, want %s@sha256:<64 hex>", c.image, got, c.repo)
		}
	}
	if got := fleet.ImageID("registry.example/app:v1@" + digest); got != "registry.example/app@"+digest {
		t.Errorf("a pinned digest: %s", got)
	}
	if fleet.ImageID("app:v1") == fleet.ImageID("app:v2") {
		t.Error("two tags give one imageID")
	}
}
