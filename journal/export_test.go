package journal

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadExportHandsOnItsCheckpoint: an export's checkpoint line comes
// back as the checkpoint it was, before the records; a reader of records
// alone passes it over; one anywhere but first, or anchored to no hash,
// is an error that names the line.
func TestReadExportHandsOnItsCheckpoint(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 10)
	data := bytes.Repeat([]byte("state;"), 400_000) // past a line scanner's bound
	if err := j.SaveCheckpoint(4, data); err != nil {
		t.Fatal(err)
	}
	c, _, err := j.LatestCheckpoint(0)
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, j)
	write := func(lines ...any) string {
		t.Helper()
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(t.TempDir(), "export.jsonl")
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	line := func(r Record) any {
		raw, err := r.Value()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"seq": r.Seq, "raw": raw}
	}
	path := write(ExportCheckpointLine(c), line(recs[4]), line(recs[5]))
	var got Checkpoint
	var seqs []uint64
	if err := ReadExport(path, func(c Checkpoint) error {
		if len(seqs) > 0 {
			t.Fatal("the checkpoint came after a record")
		}
		got = c
		return nil
	}, func(r Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 4 || got.Hash != c.Hash || !got.Time.Equal(c.Time) || !bytes.Equal(got.Data, data) || len(seqs) != 2 || seqs[0] != 5 {
		t.Fatalf("read back: checkpoint at %d (same hash %v, same data %v), records %v", got.Seq, got.Hash == c.Hash, bytes.Equal(got.Data, data), seqs)
	}
	seqs = nil
	if err := ReadExportFile(path, func(r Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil || len(seqs) != 2 {
		t.Fatalf("records alone: %v, %v", seqs, err)
	}
	if err := ReadExportFile(write(line(recs[4]), ExportCheckpointLine(c)), func(Record) error { return nil }); err == nil || !strings.Contains(err.Error(), ":2: a checkpoint after records") {
		t.Fatalf("a checkpoint on line 2: %v", err)
	}
	if err := ReadExportFile(write(map[string]any{"checkpoint": map[string]any{"seq": 4, "hash": "beef", "time": c.Time}}), func(Record) error { return nil }); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("a checkpoint anchored to no hash: %v", err)
	}
}
