package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet/lean"
)

// startLean builds cmd/leankubelet from this source tree into dir (the Go
// build cache makes a rebuild a link) and runs it.
func startLean(ctx context.Context, c *cluster.Cluster, opts Options, dir string) (*Fleet, error) {
	src, err := cluster.SourceDir()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "leankubelet")
	fmt.Fprintf(opts.Progress, "building leankubelet\n")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/fleet/lean/cmd/leankubelet")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("fleet: go build ./test/fleet/lean/cmd/leankubelet: %v\n%s", err, out)
	}
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	f := &Fleet{Kind: Lean, Dir: dir, base: "http://127.0.0.1:" + strconv.Itoa(port)}
	f.proc, err = cluster.StartProcess("leankubelet", dir, bin, []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--manage-nodes-with-annotation-selector=" + ManagedAnnotation + "=" + ManagedValue,
		"--server-address=127.0.0.1:" + strconv.Itoa(port),
		"--workers=" + strconv.Itoa(opts.Parallelism),
		"--start-delay=" + opts.StartDelay.String(),
		"--image-change-delay=" + opts.ImageChangeDelay.String(),
		"--resize-delay=" + opts.ResizeDelay.String(),
		"--slow-start-delay=" + opts.SlowStartDelay.String(),
		"--pull-back-off-delay=" + opts.PullBackOffDelay.String(),
		"--crash-loop-period=" + opts.CrashLoopPeriod.String(),
		// As kwok's: the node lifecycle controller reads a node as alive
		// while its Lease is renewed (every quarter of this).
		"--node-lease-duration=40s",
	}, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "leankubelet starting (log %s)\n", f.proc.Log)
	if err := f.waitHealthy(ctx, opts.StartTimeout); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// LeanStats returns the lean kubelet's counters (what it wrote, how many
// writes were refused as stale); for a kwok fleet, an error.
func (f *Fleet) LeanStats(ctx context.Context) (lean.Stats, error) {
	var s lean.Stats
	if f.Kind != Lean {
		return s, fmt.Errorf("fleet: %s keeps no lean.Stats", f.Kind)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("fleet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("fleet: GET /stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("fleet: /stats: %w", err)
	}
	return s, nil
}
