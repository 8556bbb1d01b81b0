package journal

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// tablesDir is where checkpoints' tables are written before Pebble
// ingests them, in the journal's directory (a link, not a copy, moves
// them in). What is there when the journal opens was left by a crash
// before its ingestion, and is deleted.
const tablesDir = "checkpoint-tables"

// tableFile is a checkpoint's pieces as a table file Pebble can ingest.
type tableFile struct {
	path string
	file objstorage.Writable
	w    *sstable.Writer
	done bool // finished or abandoned: the file is closed
}

func createTable(j *Journal, seq, gen uint64) (*tableFile, error) {
	dir := filepath.Join(j.dir, tablesDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("%020d-%016x.sst", seq, gen))
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	file := objstorageprovider.NewFileWritable(f)
	return &tableFile{path: path, file: file, w: sstable.NewWriter(file, sstable.WriterOptions{
		TableFormat: j.db.TableFormat(),
	})}, nil
}

// set adds a piece; keys come in increasing order.
func (t *tableFile) set(key, value []byte) error { return t.w.Set(key, value) }

// finish writes what the table holds to the file, synced.
func (t *tableFile) finish() error {
	t.done = true
	return t.w.Close()
}

// remove deletes the file (best effort: Open deletes what stays). A table
// not finished is abandoned as it is: closing its writer would finish it,
// writing and syncing the rest of a file about to be deleted.
func (t *tableFile) remove() {
	if !t.done {
		t.done = true
		t.file.Abort()
	}
	_ = os.Remove(t.path)
}

// removeTables deletes the tables a crash left before their ingestion.
func removeTables(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, tablesDir)); err != nil {
		return fmt.Errorf("journal: remove unfinished checkpoint tables: %w", err)
	}
	return nil
}
