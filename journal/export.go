package journal

import (
	"bufio"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ExportedCheckpoint is the line of a `rollbook journal export` that
// carries the checkpoint its records follow, when they do not start at
// record 1 (a pruned journal, or --from at a checkpoint): what a reader
// of the export starts from, as a reader of the journal starts from the
// checkpoint its log starts at. Data is the checkpoint's, base64 in JSON.
type ExportedCheckpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Time string `json:"time"`
	Data []byte `json:"data"`
}

// ExportCheckpointLine is c as the first line of an export.
func ExportCheckpointLine(c Checkpoint) any {
	return struct {
		Checkpoint ExportedCheckpoint `json:"checkpoint"`
	}{ExportedCheckpoint{Seq: c.Seq, Hash: hex.EncodeToString(c.Hash[:]), Time: c.Time.UTC().Format(time.RFC3339Nano), Data: c.Data}}
}

// ReadExportFile reads a `rollbook journal export` file (JSON lines,
// gzipped when the name ends in .gz) and passes fn each record, decoded
// from the line's "raw" field: the stored record, checksum and all. It
// does not check how records link; the caller that needs a chain checks
// it, as it would for any other copy. A checkpoint line is passed over.
func ReadExportFile(path string, fn func(Record) error) error {
	return ReadExport(path, nil, fn)
}

// ReadExport is ReadExportFile that hands the export's checkpoint line,
// when it has one (it comes first), to checkpoint (nil: passed over).
func ReadExport(path string, checkpoint func(Checkpoint) error, fn func(Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	// NB: a decoder, not a line scanner: a checkpoint line is the size of
	// the state (megabytes at 10,000 pods), past any line buffer's bound.
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	for line := 1; ; line++ {
		var l struct {
			Raw        []byte              `json:"raw"`
			Checkpoint *ExportedCheckpoint `json:"checkpoint"`
		}
		if err := dec.Decode(&l); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if l.Checkpoint != nil {
			if line != 1 {
				return fmt.Errorf("%s:%d: a checkpoint after records: an export has one at most, first", path, line)
			}
			c, err := l.Checkpoint.checkpoint()
			if err != nil {
				return fmt.Errorf("%s:%d: %w", path, line, err)
			}
			if checkpoint != nil {
				if err := checkpoint(c); err != nil {
					return err
				}
			}
			continue
		}
		if len(l.Raw) == 0 {
			return fmt.Errorf("%s:%d: no raw record (export with a current rollbook)", path, line)
		}
		rec, err := DecodeRecord(l.Raw)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

func (e *ExportedCheckpoint) checkpoint() (Checkpoint, error) {
	c := Checkpoint{Seq: e.Seq, Data: e.Data}
	h, err := hex.DecodeString(e.Hash)
	if err != nil || len(h) != 32 || e.Seq == 0 {
		return c, fmt.Errorf("%w: a checkpoint at record %d anchored to %q", ErrCorrupt, e.Seq, e.Hash)
	}
	copy(c.Hash[:], h)
	if c.Time, err = time.Parse(time.RFC3339Nano, e.Time); err != nil {
		return c, fmt.Errorf("%w: checkpoint time: %w", ErrCorrupt, err)
	}
	return c, nil
}
