package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/fxamacker/cbor/v2"
)

// Checkpoint is what a reader folded from the journal up to and including
// record Seq, saved so that later readers start after Seq instead of at
// record 1. It is the journal's snapshot in the sense of raft's: the
// journal stores and returns Data whole, written in pieces (see
// NewCheckpoint), and never looks inside it.
//
// A checkpoint is anchored to the chain: Hash is the hash of record Seq,
// the Prev of record Seq+1. Records up to a checkpoint may be pruned
// (Prune); the anchor then lets every reader still check that the first
// record kept links to what the checkpoint was taken from.
type Checkpoint struct {
	Seq  uint64
	Hash [32]byte
	// Time is record Seq's time: retention by age compares it.
	Time time.Time
	Data []byte
}

// checkpointHead is a checkpoint as stored under its 'K' key: the record
// it is anchored to, and where its data is: Pieces pieces under the 'D'
// keys (Seq, Gen, 0 … Pieces-1), each framed, Bytes in all. Gen tells one
// write of the checkpoint at Seq from another (one it replaces, or one a
// crash cut short).
//
// Invariant: a head names pieces that are all there. Commit writes the
// head only once every piece is written, in one synced batch with the
// deletion of every other generation's pieces at Seq; a head and its
// pieces are deleted in one batch.
type checkpointHead struct {
	_      struct{} `cbor:",toarray"`
	Seq    uint64
	Hash   []byte
	Time   int64
	Bytes  uint64
	Pieces uint32
	Gen    uint64
}

// checkpointValue is a checkpoint as written until 2026-12-04: whole,
// data included, under its 'K' key. Journals on disk still hold such
// checkpoints and every reader reads them.
type checkpointValue struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Hash []byte
	Time int64
	Data []byte
}

// The first byte of a 'K' value's payload tells the two apart: a head is
// an array of six, a checkpointValue of four.
const (
	headArray     = majArray<<5 | 6
	oneValueArray = majArray<<5 | 4
)

// ckptDecMode decodes checkpoint values and, through DecodeCheckpoint,
// their Data: a checkpoint holds every object the controller tracks, so
// its maps are allowed far more pairs than a record body's. The bound
// still stops a corrupt length from allocating without limit.
var ckptDecMode = newDecMode(maxCheckpointPairs)

// maxCheckpointPairs bounds one map or array in a checkpoint: 16M, above
// any one shard's fleet (DESIGN: a shard tracks up to ~100k pods).
const maxCheckpointPairs = 1 << 24

// EncodeCheckpoint encodes a checkpoint's Data as core deterministic CBOR,
// with no size bound: a checkpoint is never a record and is never
// published as one message. It returns the bytes CheckpointWriter.Encode
// writes in pieces, in one slice.
func EncodeCheckpoint(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := pieceEncoder{buf: &buf}
	if err := e.encode(reflect.ValueOf(v)); err != nil {
		return nil, fmt.Errorf("journal: encode checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeCheckpoint decodes Data written by EncodeCheckpoint; like
// DecodeBody, unknown fields and malformed input wrap ErrCorrupt.
// A v with a Restored method has it called after decoding, to rebuild
// what a checkpoint does not hold (projections.Books: pods' keys).
func DecodeCheckpoint(b []byte, v any) error {
	if err := ckptDecMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("journal: decode checkpoint: %w: %w", ErrCorrupt, err)
	}
	if r, ok := v.(interface{ Restored() }); ok {
		r.Restored()
	}
	return nil
}

// ckptPartDecMode is ckptDecMode passing over the fields its target does
// not name: DecodeCheckpointPart.
var ckptPartDecMode = decModeOf(maxCheckpointPairs, cbor.ExtraDecErrorNone)

// DecodeCheckpointPart decodes into v, a pointer to a struct, only the
// fields of a checkpoint's Data that the struct names, passing over the
// others without building them: a reader that needs a small part (where
// each rollout's records begin) does not build a fleet's state for it.
func DecodeCheckpointPart(b []byte, v any) error {
	if err := ckptPartDecMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("journal: decode checkpoint: %w: %w", ErrCorrupt, err)
	}
	return nil
}

// SaveCheckpoint stores data as the checkpoint at record seq, which must
// be committed and not pruned: NewCheckpoint, Write and Commit, for data
// already encoded. Saving again at the same seq replaces it.
func (j *Journal) SaveCheckpoint(seq uint64, data []byte) error {
	w, err := j.NewCheckpoint(seq)
	if err != nil {
		return err
	}
	defer w.Abort()
	if !j.enoughSpace(2 * uint64(len(data))) { // the table, and a copy should Pebble not link it
		return fmt.Errorf("journal: checkpoint at %d: %w", seq, ErrDiskFull)
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err = w.Commit()
	return err
}

// LatestCheckpoint returns the newest checkpoint at or below record atMost
// (0: the newest of all), and false when there is none. Its Data is the
// one copy read: the size of the data, allocated once.
func (j *Journal) LatestCheckpoint(atMost uint64) (Checkpoint, bool, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return Checkpoint{}, false, ErrClosed
	}
	// One view of head and pieces: a Prune or a thinning meanwhile does
	// not take the pieces from under the head.
	snap := j.db.NewSnapshot()
	defer snap.Close()
	m, data, ok, err := newestHead(snap, atMost)
	if !ok || err != nil {
		return Checkpoint{}, false, err
	}
	c := Checkpoint{Seq: m.Seq, Hash: m.Hash, Time: m.Time, Data: data}
	if m.OneValue {
		return c, true, nil // data is its own copy already
	}
	// NB: the length comes from a checksummed head; the bound on what is
	// reserved up front is for a head that is wrong all the same.
	c.Data = make([]byte, 0, min(m.Bytes, 1<<30))
	err = readPieces(snap, m, func(p []byte) error {
		c.Data = append(c.Data, p...)
		return nil
	})
	if err != nil {
		return Checkpoint{}, false, err
	}
	return c, true, nil
}

// newestHead reads the head of the newest checkpoint at or below record
// atMost (0: the newest of all), and, for one stored in one value (an
// older binary's), its data; false when there is none.
func newestHead(r pebble.Reader, atMost uint64) (m ckptMeta, data []byte, ok bool, err error) {
	upper := checkpointEnd
	if atMost != 0 {
		upper = checkpointKey(atMost + 1)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: checkpointStart, UpperBound: upper})
	if err != nil {
		return ckptMeta{}, nil, false, fmt.Errorf("journal: open iterator: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return ckptMeta{}, nil, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return ckptMeta{}, nil, false, fmt.Errorf("journal: read checkpoint: %w", err)
	}
	m, p, err := decodeCheckpointMeta(it.Key(), v)
	if err != nil {
		return ckptMeta{}, nil, false, err
	}
	if m.OneValue {
		var cv checkpointValue
		if err := ckptDecMode.Unmarshal(p, &cv); err != nil {
			return ckptMeta{}, nil, false, fmt.Errorf("journal: checkpoint %d: %w: %w", m.Seq, ErrCorrupt, err)
		}
		data = cv.Data
	}
	return m, data, true, nil
}

// deleteCheckpoint removes the checkpoint at seq, if any, head and pieces
// in one batch. The newest checkpoint at or below the journal's start
// cannot be deleted: readers start from it.
func (j *Journal) deleteCheckpoint(seq uint64) error {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return ErrClosed
	}
	if seq+1 == j.First() && seq > 0 {
		return fmt.Errorf("journal: checkpoint %d is where the journal starts", seq)
	}
	b := j.db.NewBatch()
	defer b.Close()
	if err := b.Delete(checkpointKey(seq), nil); err != nil {
		return err
	}
	if err := b.DeleteRange(piecesKey(seq), piecesKey(seq+1), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("journal: delete checkpoint %d: %w", seq, err)
	}
	return nil
}

// CheckpointInfo describes a stored checkpoint without its data.
type CheckpointInfo struct {
	Seq   uint64
	Hash  [32]byte // record Seq's
	Time  time.Time
	Bytes int
}

// Checkpoints lists the stored checkpoints, oldest first, from their
// heads alone.
func (j *Journal) Checkpoints() ([]CheckpointInfo, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return nil, ErrClosed
	}
	ms, err := checkpointMetas(j.db)
	if err != nil {
		return nil, err
	}
	out := make([]CheckpointInfo, len(ms))
	for i, m := range ms {
		out[i] = CheckpointInfo{Seq: m.Seq, Hash: m.Hash, Time: m.Time, Bytes: int(m.Bytes)}
	}
	return out, nil
}

// checkpointMetas decodes every checkpoint's 'K' value, oldest first.
// A checkpoint in one value is read whole, its checksum checked.
func checkpointMetas(r pebble.Reader) ([]ckptMeta, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: checkpointStart, UpperBound: checkpointEnd})
	if err != nil {
		return nil, fmt.Errorf("journal: open iterator: %w", err)
	}
	defer it.Close()
	var out []ckptMeta
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("journal: read checkpoint: %w", err)
		}
		m, _, err := decodeCheckpointMeta(it.Key(), v)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, it.Error()
}

// ckptMeta is what a 'K' value says of its checkpoint, in either format.
type ckptMeta struct {
	Seq   uint64
	Hash  [32]byte
	Time  time.Time
	Bytes uint64
	// OneValue: the data is in the 'K' value (a checkpointValue);
	// otherwise in Pieces pieces of generation Gen.
	OneValue bool
	Pieces   uint32
	Gen      uint64
}

// oneValueHeader is checkpointValue without its data, of which it keeps
// the length: listing checkpoints (retention does, every minute) must not
// decode and copy megabytes per checkpoint.
type oneValueHeader struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Hash []byte
	Time int64
	Data byteStringLen
}

// byteStringLen decodes a CBOR byte string as its length alone.
type byteStringLen int

func (n *byteStringLen) UnmarshalCBOR(b []byte) error {
	if len(b) == 0 || b[0]>>5 != 2 {
		return fmt.Errorf("journal: checkpoint data is not a byte string")
	}
	var l uint64
	switch ai := b[0] & 0x1f; {
	case ai < 24:
		l = uint64(ai)
	case ai <= 27 && len(b) >= 1+1<<(ai-24):
		for _, c := range b[1 : 1+1<<(ai-24)] {
			l = l<<8 | uint64(c)
		}
	default:
		return fmt.Errorf("journal: checkpoint data has a malformed length")
	}
	*n = byteStringLen(l)
	return nil
}

// decodeCheckpointMeta decodes a 'K' value, and returns its payload
// (aliasing v) for a caller that reads a one-value checkpoint's data.
func decodeCheckpointMeta(key, v []byte) (ckptMeta, []byte, error) {
	seq, ok := seqOfCheckpointKey(key)
	if !ok {
		return ckptMeta{}, nil, fmt.Errorf("journal: %w: malformed checkpoint key %x", ErrCorrupt, key)
	}
	p, err := unframe(v)
	if err != nil {
		return ckptMeta{}, nil, fmt.Errorf("journal: checkpoint %d: %w", seq, err)
	}
	var m ckptMeta
	var hash []byte
	var at int64
	switch {
	case len(p) == 0:
		err = errors.New("empty")
	case p[0] == headArray:
		var h checkpointHead
		err = ckptDecMode.Unmarshal(p, &h)
		m = ckptMeta{Seq: h.Seq, Bytes: h.Bytes, Pieces: h.Pieces, Gen: h.Gen}
		hash, at = h.Hash, h.Time
	case p[0] == oneValueArray:
		var h oneValueHeader
		err = ckptDecMode.Unmarshal(p, &h)
		m = ckptMeta{Seq: h.Seq, Bytes: uint64(h.Data), OneValue: true}
		hash, at = h.Hash, h.Time
	default:
		err = errors.New("neither a head nor a whole checkpoint")
	}
	if err != nil || m.Seq != seq || len(hash) != 32 {
		return ckptMeta{}, nil, fmt.Errorf("journal: checkpoint %d: %w: does not decode or names another record", seq, ErrCorrupt)
	}
	copy(m.Hash[:], hash)
	m.Time = time.Unix(0, at).UTC()
	return m, p, nil
}

// record reads one committed record. The caller holds rw.
func (j *Journal) record(seq uint64) (Record, error) {
	v, closer, err := j.db.Get(logKey(seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, fmt.Errorf("%w: record %d is not stored (pruned?)", ErrBrokenChain, seq)
	}
	if err != nil {
		return Record{}, err
	}
	defer closer.Close()
	r, err := DecodeRecord(v)
	if err != nil {
		return Record{}, &LinkError{Seq: seq, Err: err}
	}
	return r, nil
}

// anchor is where a pruned log begins: the first record kept, and the hash
// and time of the record before it (the checkpoint it was pruned to).
type anchor struct {
	First uint64
	Hash  [32]byte
	Time  time.Time
}

func (a anchor) encode() []byte {
	p := make([]byte, 0, 8+32+8)
	p = binary.BigEndian.AppendUint64(p, a.First)
	p = append(p, a.Hash[:]...)
	p = binary.BigEndian.AppendUint64(p, uint64(a.Time.UnixNano()))
	return frame(p)
}

func decodeAnchor(p []byte) (anchor, error) {
	if len(p) != 8+32+8 {
		return anchor{}, fmt.Errorf("journal: %w: log start is %d bytes", ErrCorrupt, len(p))
	}
	a := anchor{First: binary.BigEndian.Uint64(p)}
	copy(a.Hash[:], p[8:40])
	a.Time = time.Unix(0, int64(binary.BigEndian.Uint64(p[40:]))).UTC()
	return a, nil
}

// First returns the first record the journal still holds: 1 unless it was
// pruned. Read and Follow from an earlier sequence start here.
func (j *Journal) First() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.start.First
}

// Prune deletes every record up to and including the checkpoint at seq,
// and every older checkpoint, pieces included; the journal then starts at
// seq+1, anchored to that checkpoint's hash. Cursors are kept. Readers
// already past the pruned range are unaffected; one reading inside it (a
// Pebble iterator holds its snapshot) finishes on what it saw.
//
// NB: what is pruned is gone from this journal. The caller decides what
// may go (nothing still to be published or exported, nothing an audit
// still needs locally); Prune only refuses to leave the journal without a
// checkpoint to start from.
func (j *Journal) Prune(ctx context.Context, seq uint64) error {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return ErrClosed
	}
	v, closer, err := j.db.Get(checkpointKey(seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("journal: prune to %d: no checkpoint there", seq)
	}
	if err != nil {
		return fmt.Errorf("journal: prune to %d: %w", seq, err)
	}
	c, _, err := decodeCheckpointMeta(checkpointKey(seq), v)
	closer.Close()
	if err != nil {
		return err
	}
	j.pruneMu.Lock()
	defer j.pruneMu.Unlock()
	first := j.First()
	if seq < first {
		return nil // already pruned past it
	}
	b := j.db.NewBatch()
	defer b.Close()
	a := anchor{First: seq + 1, Hash: c.Hash, Time: c.Time}
	if err := b.DeleteRange(logKey(first), logKey(seq+1), nil); err != nil {
		return err
	}
	if err := b.DeleteRange(checkpointStart, checkpointKey(seq), nil); err != nil {
		return err
	}
	// The older checkpoints' pieces, and any that no head names.
	if err := b.DeleteRange(piecesStart, piecesKey(seq), nil); err != nil {
		return err
	}
	if err := b.Set(metaKey(metaStart), a.encode(), nil); err != nil {
		return err
	}
	// NB: publish the new start before the delete is visible, so a reader
	// that opens an iterator after the commit never looks for a deleted
	// record; one that read the old start first meets a gap at most,
	// which scan reports rather than skips.
	j.mu.Lock()
	j.start = a
	j.mu.Unlock()
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("journal: prune to %d: %w", seq, err)
	}
	if err := ctx.Err(); err != nil {
		return nil // the prune is done; compaction can wait for the next one
	}
	// Reclaim the space now rather than whenever Pebble next compacts the
	// range: retention by size is the reason to prune at all.
	if err := j.db.Compact(ctx, logStart, logKey(seq+1), false); err != nil && ctx.Err() == nil {
		j.opts.Logger.Warn("journal: compacting the pruned range", "err", err)
	}
	return nil
}

// LogBytes estimates the disk space the records take (Pebble's estimate,
// from its table metadata: cheap, and within a few percent).
func (j *Journal) LogBytes() (uint64, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return 0, ErrClosed
	}
	return j.db.EstimateDiskUsage(logStart, logEnd)
}

// logBytesFrom estimates the disk space of the records from seq on: what
// pruning to the checkpoint at seq-1 would leave.
func (j *Journal) logBytesFrom(seq uint64) (uint64, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return 0, ErrClosed
	}
	return j.db.EstimateDiskUsage(logKey(seq), logEnd)
}

// loadStart reads where a pruned log starts; a journal never pruned starts
// at record 1 with a zero anchor.
func (j *Journal) loadStart() error {
	j.start = anchor{First: 1}
	p, ok, err := j.getFramed(metaKey(metaStart))
	if err != nil {
		return fmt.Errorf("journal: read log start: %w", err)
	}
	if !ok {
		return nil
	}
	j.start, err = decodeAnchor(p)
	return err
}

func (j *Journal) startAnchor() anchor {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.start
}
