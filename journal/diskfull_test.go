package journal

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size MiB for the test: a real filesystem
// that really fills. It needs root, as the real-node tests do.
func smallDisk(t *testing.T, mib int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(mib)+"m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a %d MiB tmpfs (the test needs root): %v: %s", mib, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A disk that fills under the journal: commits wait instead of Pebble
// dying on ENOSPC, DiskFull says so, nothing is lost, and once space
// returns the waiting appends commit and the chain verifies, without a
// restart.
func TestFullDiskWaitsAndRecovers(t *testing.T) {
	disk := smallDisk(t, 48)
	j, err := Open(filepath.Join(disk, "journal"), Options{Logger: testLogger(t), MinFreeBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// Another tenant of the volume takes most of it.
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < 24; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	// Append until the journal holds its commits.
	var stop atomic.Bool
	appended := make(chan int, 1)
	go func() {
		n := 0
		for i := 0; !stop.Load(); i++ {
			es := make([]Entry, 100)
			for k := range es {
				es[k] = entry(t, i*100+k)
			}
			if _, err := j.Append(testCtx(t), nil, es...); err != nil {
				appended <- -1
				return
			}
			n += len(es)
			if i > 100_000 {
				appended <- -2
				return
			}
		}
		appended <- n
	}()
	eventually(t, time.Minute, "the journal to stop committing on a full disk", j.DiskFull)
	stop.Store(true)
	seq, _ := j.Last()
	// A commit held: an append waits, it does not fail.
	done := make(chan error, 1)
	go func() {
		_, err := j.Append(testCtx(t), nil, entry(t, 1))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("an append on a full disk returned %v instead of waiting", err)
	case <-time.After(time.Second): // a negative: that nothing happens for a while
	}
	if err := j.SaveCheckpoint(seq, make([]byte, 1<<20)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a checkpoint on a full disk: %v, want ErrDiskFull", err)
	}
	// Space returns: everything queued commits.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting append failed once space returned: %v", err)
	}
	if n := <-appended; n < 0 {
		t.Fatalf("the appender failed (%d)", n)
	}
	eventually(t, 10*time.Second, "DiskFull to clear", func() bool { return !j.DiskFull() })
	last, _ := j.Last()
	if last <= seq {
		t.Fatalf("nothing committed after space returned (last %d)", last)
	}
	if n, err := j.Verify(testCtx(t)); err != nil || n != last {
		t.Fatalf("Verify = %d, %v; want %d records", n, err, last)
	}
}

// A journal reopened on a disk with no byte free (its process restarted
// while another tenant filled the volume) does not fail to open, so the
// controller does not crash-loop: opening waits (Pebble retries its flush)
// and completes once space returns.
func TestOpenOnAFullDisk(t *testing.T) {
	disk := smallDisk(t, 8)
	dir := filepath.Join(disk, "journal")
	j, err := Open(dir, Options{Logger: discardLogger(), MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	appendEach(t, j, 0, 100)
	j.Close()
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // ENOSPC: not a byte left
		}
	}
	f.Close()
	opened := make(chan error, 1)
	var j2 *Journal
	go func() {
		var err error
		j2, err = Open(dir, Options{Logger: discardLogger(), MinFreeBytes: 1 << 20})
		opened <- err
	}()
	got := false
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("opening on a full disk failed (a crash loop): %v", err)
		}
		got = true
	case <-time.After(2 * time.Second): // still opening: space returns below
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if !got {
		if err := <-opened; err != nil {
			t.Fatalf("opening once space returned: %v", err)
		}
	}
	defer j2.Close()
	appendEach(t, j2, 100, 1)
	if n, err := j2.Verify(testCtx(t)); err != nil || n != 101 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}
