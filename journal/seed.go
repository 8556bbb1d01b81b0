package journal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// seedReq is Seed's request to the committer: the checkpoint's head, as
// stored, and where the log then starts.
type seedReq struct {
	head  []byte
	start anchor
}

// Seed starts a journal that holds nothing yet (no record, never pruned)
// at c, a checkpoint of another copy of the same journal: its stream's
// (FetchStreamCheckpoint). The journal is then as if it had been pruned
// to c. First is c.Seq+1, Last is c.Seq with c.Hash, the next Import
// must be record c.Seq+1 linking to c.Hash, and every reader starts from
// c as from a pruned journal's checkpoint. It is how a standby joins a
// stream whose start the stream's limits (MaxAge, MaxBytes) removed.
//
// c.Data is written in pieces, as a checkpoint the journal takes itself;
// its head and the log's start are then written in one synced batch, so
// a crash leaves the journal empty or seeded, never half of it. Seeding
// a journal that holds a record fails, and writes nothing.
func (j *Journal) Seed(ctx context.Context, c Checkpoint) error {
	if c.Seq == 0 {
		return errors.New("journal: seed: a checkpoint at record 0")
	}
	if seq, _ := j.Last(); seq != 0 || j.First() != 1 {
		return fmt.Errorf("journal: seed at %d: the journal holds records up to %d: only an empty journal is seeded", c.Seq, seq)
	}
	var gen [8]byte
	if _, err := rand.Read(gen[:]); err != nil {
		return fmt.Errorf("journal: seed at %d: %w", c.Seq, err)
	}
	j.ckptMu.Lock()
	w := &CheckpointWriter{
		j:    j,
		head: checkpointHead{Seq: c.Seq, Hash: c.Hash[:], Time: c.Time.UnixNano(), Gen: binary.BigEndian.Uint64(gen[:])},
		seed: ctx,
	}
	defer w.Abort()
	if !j.enoughSpace(2 * uint64(len(c.Data))) {
		return fmt.Errorf("journal: seed at %d: %w", c.Seq, ErrDiskFull)
	}
	if _, err := w.Write(c.Data); err != nil {
		return err
	}
	_, err := w.Commit()
	return err
}

// commitSeed writes a seeding checkpoint's head through the committer, the
// owner of the log's tail, with the log's new start.
func (w *CheckpointWriter) commitSeed() error {
	h := w.head
	v, err := encMode.Marshal(h)
	if err != nil {
		return fmt.Errorf("journal: encode checkpoint %d: %w", h.Seq, err)
	}
	a := anchor{First: h.Seq + 1, Hash: [32]byte(h.Hash), Time: time.Unix(0, h.Time).UTC()}
	req := &appendReq{seed: &seedReq{head: frame(v), start: a}, done: make(chan appendResult, 1)}
	if err := w.j.enqueue(w.seed, req); err != nil {
		return err
	}
	return (<-req.done).err
}
