package fleet

import (
	"bytes"
	"embed"
	"fmt"
	"strings"
	"text/template"
	"time"
)

//go:embed stages/*
var stageFiles embed.FS

// Pod stage actions, in the classifier's priority order (stages/pod.jq).
// Each is one kwok Stage named "pod-<action>".
var podActions = []string{"delete", "start", "restart", "resize", "slowready", "pullbackoff", "crashloop", "sync", "none"}

type podStage struct {
	Action      string
	Prefilter   string // a cheap jq test the classifier's verdict implies
	DelayMillis int64
	DelayFrom   string // a jq expression giving an absolute deadline
	Template    string
}

// prefilters are cheap necessary conditions of each action, checked before
// the classifier: kwok evaluates every stage's selector on every pod event,
// and the full classifier costs ~60µs a run, so without them each event
// pays for nine. A prefilter may let through more than its action (the
// classifier decides) but must never reject a pod the classifier would
// give its action.
var prefilters = map[string]string{
	"delete": `.metadata.deletionTimestamp != null`,
	"start": `((.status.containerStatuses // []) | length) != (.spec.containers | length)
 or ((.status.initContainerStatuses // []) | length) != ((.spec.initContainers // []) | length)`,
	"restart": `[.spec.containers[].image] != [(.status.containerStatuses // [])[].image]`,
	"resize": `def res: {requests: ((. // {}).requests // {}), limits: ((. // {}).limits // {})};
 [.spec.containers[].resources | res] != [(.status.containerStatuses // [])[].resources | res]`,
	"slowready":   `any(.spec.containers[]; .image | test("slowstart"))`,
	"pullbackoff": `any((.status.containerStatuses // [])[]; .state.waiting.reason == "ErrImagePull")`,
	"crashloop":   `any((.status.containerStatuses // [])[]; .state.waiting.reason == "CrashLoopBackOff")`,
}

// Config renders kwok's configuration for opts: a KwokConfiguration, the
// stock node stages (initialize, heartbeat with lease) and the pod stages.
// The standalone kwok binary loads no stages at all unless given this.
func Config(opts Options) ([]byte, error) {
	opts = opts.withDefaults()
	read := func(name string) (string, error) {
		b, err := stageFiles.ReadFile("stages/" + name)
		if err != nil {
			return "", fmt.Errorf("fleet: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	classifier, err := read("pod.jq")
	if err != nil {
		return nil, err
	}
	status, err := read("pod-status.tmpl")
	if err != nil {
		return nil, err
	}
	var nodeStages []string
	for _, f := range []string{"node-initialize.yaml", "node-heartbeat-with-lease.yaml"} {
		s, err := read(f)
		if err != nil {
			return nil, err
		}
		nodeStages = append(nodeStages, s)
	}
	delays := map[string]time.Duration{
		"start":       opts.StartDelay,
		"restart":     opts.ImageChangeDelay,
		"resize":      opts.ResizeDelay,
		"slowready":   opts.SlowStartDelay,
		"pullbackoff": opts.PullBackOffDelay,
		"crashloop":   opts.CrashLoopPeriod,
	}
	var stages []podStage
	for _, a := range podActions {
		s := podStage{
			Action:      a,
			Prefilter:   prefilters[a],
			DelayMillis: delays[a].Milliseconds(),
			Template:    strings.ReplaceAll(status, "[[ .Action ]]", a),
		}
		if a == "slowready" {
			// An absolute deadline (container start + delay) rather than a
			// delay from the latest event: kwok restarts a stage's delay on
			// every change to the pod, which would let unrelated writes (a
			// gate flip, a crash-looping sibling) postpone readiness forever.
			// startedAt has whole seconds, so the delay is too.
			secs := int64((opts.SlowStartDelay + time.Second - 1) / time.Second)
			s.DelayFrom = fmt.Sprintf(`[.status.containerStatuses[]? | select((.image | test("slowstart")) and .state.running != null and (.ready | not))
 | .state.running.startedAt | fromdateiso8601] | min | if . == null then "0s" else . + %d | todate end`, secs)
		}
		stages = append(stages, s)
	}
	tmplText, err := read("kwok.yaml.tmpl")
	if err != nil {
		return nil, err
	}
	t, err := template.New("kwok.yaml").Delims("[[", "]]").Funcs(template.FuncMap{
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			lines := strings.Split(s, "\n")
			for i, l := range lines {
				if l != "" {
					lines[i] = pad + l
				}
			}
			return strings.Join(lines, "\n")
		},
	}).Parse(tmplText + "\n")
	if err != nil {
		return nil, fmt.Errorf("fleet: parsing kwok.yaml.tmpl: %w", err)
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{
		"Parallelism": opts.Parallelism,
		"NodeStages":  nodeStages,
		"PodStages":   stages,
		"Classifier":  classifier,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: rendering kwok.yaml.tmpl: %w", err)
	}
	return b.Bytes(), nil
}
