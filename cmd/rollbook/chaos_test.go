package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestChaosRollout: a 1,000-pod in-place rollout by two `rollbook run`
// replicas sharing a NATS stream, while the leader is SIGKILLed 20 times
// at random moments (the seed is logged; ROLLBOOK_CHAOS_SEED replays it),
// each time taken over by the standby and restarted as the new standby;
// the NATS server is restarted, etcd is compacted under the watches (a
// forced 410 for any watch that resumes), and the replicas' disk is filled
// and freed. At the end, from the apiserver: every pod runs the new image,
// restarted exactly once, none gated; and the stream replays as one
// history across every leader with no divergence.
//
// ROLLBOOK_CHAOS_PODS and ROLLBOOK_CHAOS_KILLS scale it.
func TestChaosRollout(t *testing.T) {
	pods, kills := envInt("ROLLBOOK_CHAOS_PODS", 1000), envInt("ROLLBOOK_CHAOS_KILLS", 20)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROLLBOOK_CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("chaos seed %d (ROLLBOOK_CHAOS_SEED=%d replays it), %d pods, %d kills", seed, seed, pods, kills)
	rng := rand.New(rand.NewPCG(seed, 0))
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	disk := mountTmpfs(t, filepath.Join(dir, "disk"), 512)

	nats := startTestNATS(t, dir)
	url := nats.URL
	replica := func(name string) *runProc {
		return spawnRun(t, c, filepath.Join(disk, name), "--namespaces", ns, "--leader-elect", "--leader-elect-namespace", ns,
			"--nats-url", url, "--checkpoint-every", "2000", "--workers", "32", "--cross-check-plans",
			"--leader-elect-lease-duration", "5s", "--leader-elect-renew-deadline", "4s", "--leader-elect-retry-period", "1s")
	}
	procs := map[string]*runProc{"a": replica("a"), "b": replica("b")}
	t.Cleanup(func() {
		if t.Failed() {
			for n, p := range procs {
				t.Logf("replica %s log tail:\n%s", n, cluster.Tail(p.log, 40))
			}
		}
	})
	// Like a kubelet, restart a replica that stopped on its own (one that
	// lost the Lease on these loaded cores exits to restart clean).
	revive := func() {
		for n, p := range procs {
			if exited(p) {
				t.Logf("replica %s exited on its own; restarting it", n)
				p.cmd.Wait()
				procs[n] = replica(n)
			}
		}
	}
	leader := func() string {
		var name string
		cluster.Eventually(t, 2*time.Minute, "a leader", func() error {
			revive()
			for n, p := range procs {
				if strings.Contains(p.readyz(), "200 ok: leading") {
					name = n
					return nil
				}
			}
			return fmt.Errorf("no replica leads:\n%s", cluster.Tail(procs["a"].log, 5)+cluster.Tail(procs["b"].log, 5))
		})
		return name
	}
	leader()

	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: int32(pods), gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", int32(pods), 5*time.Minute)
	before := podsByName(t, c, ns)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": max(pods/10, 1)}))

	for i := 0; i < kills; i++ {
		revive()
		name := leader()
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond) // a random moment, not a wait for a condition
		switch i {
		case kills / 3:
			t.Logf("kill %d: restarting the NATS server", i)
			nats.restart()
		case kills / 2:
			rev, err := c.EtcdRevision(ctx)
			if err == nil {
				err = c.CompactEtcd(ctx, rev)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kill %d: etcd compacted at revision %d", i, rev)
		case 2 * kills / 3:
			fillAndFree(t, disk, procs)
			revive()
			name = leader()
		}
		p := procs[name]
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		procs[name] = replica(name)
	}
	cluster.Eventually(t, 5*time.Minute, "rollout Succeeded", func() error {
		revive()
		st, err := rolloutStatus(c, ns, "web")
		if err != nil {
			return err
		}
		if st.Phase != "Succeeded" {
			return fmt.Errorf("phase %q, updated %d/%d, unavailable %d, conditions %s", st.Phase, st.Updated, st.Replicas, st.Unavailable, condSummary(st.Conditions))
		}
		return nil
	})
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
	// Each replica's checkpoints, through its kills, restarts and the
	// full disk, hold what its journal's records fold to.
	for name := range procs {
		j, err := journal.Open(filepath.Join(disk, name, "journal"), journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ca, err := ctl.AuditCheckpoints(ctx, j, ctl.AuditOptions{})
		j.Close()
		if err != nil {
			t.Fatalf("replica %s's journal: %v", name, err)
		}
		t.Logf("replica %s's journal: %d checkpoints hold the fold of their records, folded from record %d", name, len(ca.Checked), ca.From+1)
	}

	// From the apiserver: updated, restarted exactly once, none gated.
	for name, p := range podsByName(t, c, ns) {
		if p.Spec.Containers[0].Image != "registry.example/app:v2" {
			t.Fatalf("%s not updated", name)
		}
		for _, cd := range p.Status.Conditions {
			if cd.Type == "rollbook.dev/InPlaceUpdateReady" && cd.Status != "True" {
				t.Fatalf("%s left gated", name)
			}
		}
		b, a := containerStatus(before[name], "app"), containerStatus(p, "app")
		if a.RestartCount != b.RestartCount+1 || a.ContainerID == b.ContainerID {
			t.Fatalf("%s: app restarts %d → %d (container %s → %s), want exactly one", name, b.RestartCount, a.RestartCount, b.ContainerID, a.ContainerID)
		}
	}
	// One history across every leader, each of whose plans the full
	// planner made as well (--cross-check-plans).
	leads := 0
	for _, p := range procs {
		log, _ := os.ReadFile(p.log)
		leads += strings.Count(string(log), "rollbook: leading")
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "the incremental plan differs") {
				t.Errorf("a leader's incremental planner differed from Plan: %s", line)
				break
			}
		}
	}
	src := recordSource{nats: journal.NATSConfig{URL: url}, stream: "ROLLBOOK"}
	d, rp, records, err := replay(ctx, src, ns+"/web", replayMode{crossCheck: true})
	if err != nil {
		t.Fatalf("replaying the stream: %v", err)
	}
	if d != nil {
		// Which side strayed from the definition: the recorded plan, or
		// the replay's?
		fd, _, _, ferr := replay(ctx, src, ns+"/web", replayMode{full: true})
		t.Fatalf("replay of the stream diverged: %s\nreplayed with the full planner: %v, error %v", d.String(), fd, ferr)
	}
	if leads < kills+1 || rp.Actions < pods {
		t.Fatalf("%d leaderships, %d actions compared: the chaos did not happen as planned", leads, rp.Actions)
	}
	t.Logf("%d leaderships; the stream replays %d records as one history: %s", leads, records, rp.Summary())
}

// fillAndFree fills the disk the journals live on until a replica says
// its journal waits for space, then frees it.
func fillAndFree(t *testing.T, disk string, procs map[string]*runProc) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for left := free - 32<<20; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	cluster.Eventually(t, time.Minute, "the leader to report a full disk", func() error {
		var says []string
		for n, p := range procs {
			s := p.readyz()
			if strings.Contains(s, "disk full") {
				t.Logf("disk full: %s says %q", n, s)
				return nil
			}
			says = append(says, n+": "+s)
		}
		return errors.New(strings.Join(says, "; "))
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
}

// exited reports whether p's process has ended (a zombie not yet waited
// for counts).
func exited(p *runProc) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// mountTmpfs mounts a tmpfs of size MiB at dir: a real filesystem that
// fills. It needs root, as the real-node tests do.
func mountTmpfs(t *testing.T, dir string, mib int) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs (the test needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
