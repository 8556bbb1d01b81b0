package journal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ckptCrashChildEnv, when set, turns this test binary into the checkpoint
// crash test's child.
const ckptCrashChildEnv = "ROLLBOOK_JOURNAL_CKPT_CRASH_CHILD"

// ckptCrashChild appends a record and writes a checkpoint at it (0 to 6
// pieces of ckptData, written a little at a time), forever, thinning the
// checkpoints now and then as retention does. It writes "begin <seq>" to
// stdout as it starts a checkpoint and "ckpt <seq> <bytes>" once Commit
// returned.
func ckptCrashChild(dir string) {
	j, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 11))
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "child", what+":", err)
		os.Exit(4)
	}
	for c := 0; ; c++ {
		recs, err := j.Append(context.Background(), nil, Entry{Kind: KindTick, Key: "tick"})
		if err != nil {
			fail("append", err)
		}
		seq, n := recs[0].Seq, rng.IntN(6*pieceBytes)
		data := ckptData(seq, n)
		w, err := j.NewCheckpoint(seq)
		if err != nil {
			fail("new checkpoint", err)
		}
		fmt.Fprintf(out, "begin %d\n", seq)
		out.Flush()
		for len(data) > 0 {
			k := min(len(data), 1+rng.IntN(pieceBytes/2))
			if _, err := w.Write(data[:k]); err != nil {
				fail("write", err)
			}
			data = data[k:]
		}
		if _, err := w.Commit(); err != nil {
			fail("commit", err)
		}
		fmt.Fprintf(out, "ckpt %d %d\n", seq, n)
		out.Flush()
		if c%4 == 3 {
			if err := j.thin(Retention{}); err != nil {
				fail("thin", err)
			}
		}
	}
}

// TestCrashNeverLeavesAHalfCheckpoint SIGKILLs a child that writes
// checkpoints in a loop, 8 times over the same directory, after a random
// number of checkpoints, as it acknowledges one or as it begins the next
// (so that some kills land among the pieces); after each kill it reopens
// the journal: every checkpoint
// listed is whole (Verify reads every piece) and holds the data written
// for it, the newest acknowledged one is there, and pieces a kill left
// behind are never read; once a checkpoint is written after the last
// kill, none is left.
func TestCrashNeverLeavesAHalfCheckpoint(t *testing.T) {
	if dir := os.Getenv(ckptCrashChildEnv); dir != "" {
		ckptCrashChild(dir)
		return
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	acked := map[uint64]int{} // seq → bytes
	var newest uint64
	for round := 0; round < 8; round++ {
		killAfter, onBegin := 1+rng.IntN(20), rng.IntN(2) == 0
		take := func(l string) bool {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "ckpt" {
				return false
			}
			seq, err1 := strconv.ParseUint(f[1], 10, 64)
			n, err2 := strconv.Atoi(f[2])
			if err1 != nil || err2 != nil {
				return false
			}
			acked[seq], newest = n, max(newest, seq)
			return true
		}
		n := 0
		crashRound(t, fmt.Sprintf("round %d", round), "TestCrashNeverLeavesAHalfCheckpoint", ckptCrashChildEnv, dir, func(l string) bool {
			if take(l) {
				n = min(n+1, killAfter) // the log says where it was killed
			}
			if onBegin && n == killAfter-1 && strings.HasPrefix(l, "begin ") {
				n++ // killed as the next checkpoint begins: among its pieces
			}
			return n >= killAfter
		})

		j, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if _, err := j.Verify(testCtx(t)); err != nil {
			t.Fatalf("round %d: verify after SIGKILL: %v", round, err)
		}
		// Killed as the very first checkpoint began, there is none yet
		// (newest 0): then there must be none half written either.
		infos, err := j.Checkpoints()
		if err != nil || (newest > 0 && (len(infos) == 0 || infos[len(infos)-1].Seq < newest)) {
			t.Fatalf("round %d: checkpoints %+v, %v; the newest acknowledged is %d", round, infos, err, newest)
		}
		for _, ci := range infos {
			c, ok, err := j.LatestCheckpoint(ci.Seq)
			if err != nil || !ok || c.Seq != ci.Seq || !bytes.Equal(c.Data, ckptData(c.Seq, len(c.Data))) {
				t.Fatalf("round %d: checkpoint %d reads as %d bytes, %v, %v, not what was written", round, ci.Seq, len(c.Data), ok, err)
			}
			if want, ok := acked[c.Seq]; ok && want != len(c.Data) {
				t.Fatalf("round %d: checkpoint %d holds %d bytes, %d acknowledged", round, c.Seq, len(c.Data), want)
			}
		}
		var listed uint64
		if len(infos) > 0 {
			listed = infos[len(infos)-1].Seq
		}
		t.Logf("round %d: killed after %d checkpoints (as one began: %v); %d listed, newest %d; pieces of %d writes held",
			round, n, onBegin, len(infos), listed, len(piecesHeld(t, j)))
		if round == 7 {
			seq, _ := j.Last()
			if err := j.SaveCheckpoint(seq, ckptData(seq, 10)); err != nil {
				t.Fatal(err)
			}
			checkNoOrphans(t, j)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
