package journal

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// SaveCheckpointOneValue is how checkpoints were written until
// 2026-12-04: v encoded whole by the CBOR library, wrapped whole in a
// checkpointValue, framed whole, and set as one Pebble value under the
// checkpoint's key. Tests keep it as the baseline of
// BenchmarkCheckpointWrite and to write the one-value format, which
// journals on disk still hold and readers must still read. It returns the
// data's size and how long encoding it took (what the controller did
// under its fold's lock).
func (j *Journal) SaveCheckpointOneValue(seq uint64, v any) (int, time.Duration, error) {
	start := time.Now()
	data, err := encMode.Marshal(v)
	if err != nil {
		return 0, 0, err
	}
	encoded := time.Since(start)
	r, err := j.record(seq)
	if err != nil {
		return 0, 0, err
	}
	val, err := encMode.Marshal(checkpointValue{Seq: seq, Hash: r.Hash[:], Time: r.Time.UnixNano(), Data: data})
	if err != nil {
		return 0, 0, err
	}
	return len(data), encoded, j.db.Set(checkpointKey(seq), frame(val), pebble.Sync)
}
