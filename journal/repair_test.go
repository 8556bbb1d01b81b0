package journal

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// The documented repair: Verify names the first bad record, Truncate cuts
// the journal back to the record before it, and Import refills it from
// another copy (the NATS stream), so the chain continues as it was.
func TestTruncateAfterABadRecordThenImport(t *testing.T) {
	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 50)
	if _, err := j.Append(testCtx(t), []Cursor{{Name: "watch/pods", Value: "rv-50"}}, entry(t, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(testCtx(t), []Cursor{{Name: "watch/nodes", Value: "rv-20"}}); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveCheckpoint(40, []byte("s")); err != nil {
		t.Fatal(err)
	}
	copyOf := readAll(t, j) // what the stream holds
	// Bit rot in record 30.
	v, closer, err := j.db.Get(logKey(30))
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), v...)
	closer.Close()
	bad[len(bad)/2] ^= 0xff
	if err := j.db.Set(logKey(30), bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, err = j.Verify(testCtx(t))
	var le *LinkError
	if !errors.As(err, &le) || le.Seq != 30 {
		t.Fatalf("Verify = %v, want record 30 named", err)
	}
	j.Close()

	removed, err := Truncate(dir, 29, Options{Logger: discardLogger()})
	if err != nil || removed != 22 {
		t.Fatalf("Truncate = %d, %v; want 22 records removed", removed, err)
	}
	j, err = Open(dir, Options{NoSync: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n, err := j.Verify(testCtx(t)); err != nil || n != 29 {
		t.Fatalf("after truncation Verify = %d, %v", n, err)
	}
	if _, ok, _ := j.Cursor("watch/pods"); ok {
		t.Fatal("a cursor written with a removed record survived: the watch would resume past what the journal lost")
	}
	if _, ok, _ := j.Cursor("watch/nodes"); ok {
		// Written with no record of its own, after record 51: it too
		// covers what was removed.
		t.Fatal("a cursor written after the removed records survived")
	}
	if infos, _ := j.Checkpoints(); len(infos) != 0 {
		t.Fatalf("a checkpoint past the truncation survived: %+v", infos)
	}
	// A record that does not link is refused whole.
	if err := j.Import(testCtx(t), copyOf[30]); !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("importing record 31 after 29: %v, want ErrBrokenChain", err)
	}
	forged := copyOf[29]
	forged.Key = "forged"
	if err := j.Import(testCtx(t), forged); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("importing a record whose content changed: %v, want ErrCorrupt", err)
	}
	if err := j.Import(testCtx(t), copyOf[29:]...); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, j)
	if len(got) != len(copyOf) || got[len(got)-1].Hash != copyOf[len(copyOf)-1].Hash {
		t.Fatalf("after import the journal has %d records, head %x; the copy %d, head %x", len(got), got[len(got)-1].Hash[:6], len(copyOf), copyOf[len(copyOf)-1].Hash[:6])
	}
	// And it goes on from there.
	next := appendEach(t, j, 100, 1)
	if next.Seq != uint64(len(copyOf))+1 || next.Prev != copyOf[len(copyOf)-1].Hash {
		t.Fatalf("the record after the import is %d, not linked to the copy's head", next.Seq)
	}
}
