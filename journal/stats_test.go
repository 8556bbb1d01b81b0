package journal

import (
	"bytes"
	"io/fs"
	"path/filepath"
	"testing"
)

// dirBytes is what `du` would say of dir, roughly: the sizes of its files.
func dirBytes(t *testing.T, dir string) uint64 {
	var n uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += uint64(info.Size())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStats: Committed follows appends, nothing is left uncommitted once
// they return, DiskBytes tracks the store's files, and a closed journal
// says so.
func TestStats(t *testing.T) {
	j, dir := openTemp(t, Options{})
	ctx := testCtx(t)
	body := bytes.Repeat([]byte{'x'}, 200)
	for range 100 {
		if _, err := j.Append(ctx, nil, Entry{Kind: KindTick, Key: "tick", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// NB: a fresh journal's records are only in the WAL being written.
	if s := j.Stats(); s.Committed != 100 || s.DiskBytes < 100*200 {
		t.Fatalf("after 100 records: %+v", s)
	}
	for i := range 45 {
		entries := make([]Entry, 20)
		for k := range entries {
			entries[k] = Entry{Kind: KindTick, Key: "tick", Body: body}
		}
		if _, err := j.Append(ctx, nil, entries...); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	s := j.Stats()
	if s.Committed != 1000 || s.Uncommitted != 0 || s.Batches == 0 || s.Closed {
		t.Fatalf("after 1000 records: %+v", s)
	}
	// 1000 records of 200 bytes are on disk (in the WAL at least); the
	// store's own count must be of the order of its files.
	onDisk := dirBytes(t, dir)
	if s.DiskBytes < 200*1000 || s.DiskBytes > 2*onDisk {
		t.Errorf("DiskBytes %d; the directory holds %d bytes", s.DiskBytes, onDisk)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if s := j.Stats(); !s.Closed || s.Committed != 1000 || s.DiskBytes != 0 {
		t.Errorf("closed: %+v", s)
	}
}
