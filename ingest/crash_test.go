package ingest_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

const childEnv = "ROLLBOOK_INGEST_CHILD"

// childMain is the pipeline process of TestKillRestartResumes: ingest into a
// journal until killed, or until no record has come for the idle period.
func childMain() int {
	dir, ns := os.Getenv(childEnv), os.Getenv("ROLLBOOK_INGEST_NS")
	cfg := &rest.Config{Host: os.Getenv("ROLLBOOK_INGEST_SERVER"), BearerToken: os.Getenv("ROLLBOOK_INGEST_TOKEN"),
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer j.Close()
	client, err := ingest.NewClient(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	in, err := ingest.New(ingest.Options{Client: client, Journal: j, Resources: []ingest.Resource{ingest.Pods}, Namespaces: []string{ns}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	if err := in.WaitSynced(ctx); err != nil {
		return 2
	}
	fmt.Printf("synced relists=%d\n", in.Stats.Relists.Load())
	idle, _ := time.ParseDuration(os.Getenv("ROLLBOOK_INGEST_IDLE"))
	if idle == 0 {
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	last, since := in.Stats.Records.Load(), time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			fmt.Fprintln(os.Stderr, err)
			return 1
		case <-tick.C:
		}
		if n := in.Stats.Records.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > idle {
			return 0
		}
	}
}

type child struct {
	cmd     *exec.Cmd
	relists string
}

func startChild(t *testing.T, c *cluster.Cluster, dir, ns, idle string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cfg := c.Config()
	cmd.Env = append(os.Environ(), childEnv+"="+dir, "ROLLBOOK_INGEST_NS="+ns, "ROLLBOOK_INGEST_SERVER="+cfg.Host,
		"ROLLBOOK_INGEST_TOKEN="+cfg.BearerToken, "ROLLBOOK_INGEST_IDLE="+idle)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "synced relists="); ok {
				line <- s
			}
		}
		close(line)
	}()
	select {
	case s, ok := <-line:
		if !ok {
			cmd.Wait()
			t.Fatalf("pipeline process exited before syncing")
		}
		return &child{cmd: cmd, relists: s}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("pipeline process did not sync within 2m")
	}
	return nil
}

// TestKillRestartResumes kills the pipeline process with SIGKILL at random
// moments, 20 times, while pods churn: after each restart the chain
// verifies, no change is journaled twice, the watch resumes from the
// journaled cursor without relisting, and in the end every change is there.
func TestKillRestartResumes(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	dir := filepath.Join(t.TempDir(), "journal")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWrites()
	churned := make(chan error, 1)
	first := startChild(t, c, dir, ns, "")
	go func() { churned <- churn(ctx, c.Clientset(), ns, 1500, 4, w) }()
	kill := func(ch *child) {
		time.Sleep(time.Duration(50+rand.IntN(450)) * time.Millisecond) // a random moment, not a wait for a condition
		ch.cmd.Process.Signal(syscall.SIGKILL)
		ch.cmd.Wait()
	}
	kill(first)
	for i := 1; i <= 20; i++ {
		checkAfterCrash(t, dir, i)
		ch := startChild(t, c, dir, ns, "")
		if ch.relists != "0" {
			t.Fatalf("restart %d relisted (%s lists) instead of resuming the watch", i, ch.relists)
		}
		kill(ch)
	}
	if err := <-churned; err != nil {
		t.Fatalf("churn: %v", err)
	}
	// Catch up: run until idle, and again until every write is journaled.
	cluster.Eventually(t, 3*time.Minute, "every write journaled after the crashes", func() error {
		ch := startChild(t, c, dir, ns, "500ms")
		if err := ch.cmd.Wait(); err != nil {
			return fmt.Errorf("pipeline process: %w", err)
		}
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			return err
		}
		defer j.Close()
		return readJournal(t, j).check(w)
	})
	checkAfterCrash(t, dir, 21)
}

// checkAfterCrash opens the journal a killed process left: the hash chain
// verifies and no (object, version) is journaled twice.
func checkAfterCrash(t *testing.T, dir string, round int) {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatalf("round %d: reopening the journal: %v", round, err)
	}
	defer j.Close()
	if n, err := j.Verify(context.Background()); err != nil {
		t.Fatalf("round %d: chain broken after %d records: %v", round, n, err)
	}
	if err := readJournal(t, j).check(newWrites()); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
}
