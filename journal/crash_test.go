package journal

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashChildEnv, when set, turns this test binary into the crash test's
// child: it appends to the journal in that directory until killed.
const crashChildEnv = "ROLLBOOK_JOURNAL_CRASH_CHILD"

// crashChild appends from 8 goroutines forever, writing "ack <seq> <key>"
// to stdout for every record only after Append returned it, and with each
// record a cursor naming its key.
func crashChild(dir string) {
	j, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; ; c++ {
				key := fmt.Sprintf("pods/crash/p%d-%d-%d", os.Getpid(), w, c)
				body, _ := EncodeBody(CursorFact{Name: key, ResourceVersion: strconv.Itoa(c)})
				recs, err := j.Append(context.Background(), []Cursor{{Name: "crash", Value: key}},
					Entry{Kind: KindObserved, Key: key, Body: body})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				mu.Lock()
				// NB: flush per line; a line still in the buffer at SIGKILL is an
				// ack the parent never saw, which is allowed (the record is
				// durable but unclaimed); a line the parent saw must be durable.
				fmt.Fprintf(out, "ack %d %s\n", recs[0].Seq, key)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashKeepsAcknowledgedRecords re-executes this test binary as a
// child that appends in a loop, SIGKILLs it at a random moment (after a
// random number of acknowledged appends), 12 times over the same
// directory, and after each kill reopens the journal: the chain verifies,
// every sequence the child acknowledged is there holding the key it was
// acknowledged for, the cursor names a record that exists, and the next
// child carries on the same chain.
func TestCrashKeepsAcknowledgedRecords(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[uint64]string{}
	for round := 0; round < 12; round++ {
		// Kill after a random number of acks, so the kill lands at a random
		// point of the append/fsync cycle. Acks written before the kill are
		// still acks: crashRound hands them over too.
		killAfter, n := 1+rng.IntN(400), 0
		crashRound(t, fmt.Sprintf("round %d", round), "TestCrashKeepsAcknowledgedRecords", crashChildEnv, dir, func(l string) bool {
			if seq, key, ok := parseAck(l); ok {
				acked[seq] = key
				n = min(n+1, killAfter) // the log says where it was killed
			}
			return n >= killAfter
		})

		j, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		count, err := j.Verify(ctx)
		if err != nil {
			t.Fatalf("round %d: verify after SIGKILL: %v", round, err)
		}
		keys := map[uint64]string{}
		if err := j.Read(ctx, 1, func(r Record) error { keys[r.Seq] = r.Key; return nil }); err != nil {
			t.Fatal(err)
		}
		for seq, key := range acked {
			if keys[seq] != key {
				t.Fatalf("round %d: acknowledged record %d (%s) is %q after the crash", round, seq, key, keys[seq])
			}
		}
		cur, ok, err := j.Cursor("crash")
		if err != nil || !ok {
			t.Fatalf("round %d: cursor: %v %v", round, ok, err)
		}
		found := false
		for _, k := range keys {
			if k == cur {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("round %d: cursor %q is ahead of the records", round, cur)
		}
		t.Logf("round %d: killed after %d acks; %d records verify, %d acknowledged in all", round, n, count, len(acked))
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func parseAck(l string) (uint64, string, bool) {
	f := strings.Fields(l)
	if len(f) != 3 || f[0] != "ack" {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	return seq, f[2], err == nil
}
