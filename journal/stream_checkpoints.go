package journal

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoints beside the stream. The stream's limits (MaxAge, MaxBytes)
// remove its oldest records as retention prunes the journal's, and a
// reader of the stream then needs what a reader of a pruned journal has: a
// checkpoint to start from. The outbox ships the journal's checkpoints to
// a JetStream object store beside the stream (CheckpointBucket) once the
// stream holds their record, and keeps there those a reader can start
// from: a new standby seeds its journal with the newest (Seed), replay of
// the stream starts at the oldest.
//
// A checkpoint is anchored to the chain as in the journal: its Hash is the
// Prev of the stream's record Seq+1, which every reader checks. What it
// holds is trusted as a pruned journal's first checkpoint is: the records
// before it are gone.

// The metadata an object of the bucket carries.
const (
	objJournal = "rollbook-journal"
	objSeq     = "rollbook-seq"
	objHash    = "rollbook-hash"
	objTime    = "rollbook-time"
)

// CheckpointBucket is the object store beside stream that holds its
// journal's checkpoints: the stream's name, each character a bucket name
// cannot hold made '_', then "_CHECKPOINTS".
func CheckpointBucket(stream string) string {
	b := []byte(stream)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b) + "_CHECKPOINTS"
}

// StreamCheckpoint is a checkpoint in a stream's bucket, without its data.
type StreamCheckpoint struct {
	Name  string // the object's
	Seq   uint64
	Hash  [32]byte
	Time  time.Time
	Bytes uint64
}

// ListStreamCheckpoints lists journal id's checkpoints beside stream,
// oldest first; none when the bucket does not exist.
func ListStreamCheckpoints(ctx context.Context, js jetstream.JetStream, stream, id string) ([]StreamCheckpoint, error) {
	obs, err := js.ObjectStore(ctx, CheckpointBucket(stream))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: checkpoints of stream %s: %w", stream, err)
	}
	return listCheckpoints(ctx, obs, CheckpointBucket(stream), id)
}

func listCheckpoints(ctx context.Context, obs jetstream.ObjectStore, bucket, id string) ([]StreamCheckpoint, error) {
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: list checkpoints in %s: %w", bucket, err)
	}
	var out []StreamCheckpoint
	for _, info := range infos {
		if info.Deleted || info.Metadata[objJournal] != id {
			continue // not one of this journal's
		}
		sc, err := streamCheckpointOf(info)
		if err != nil {
			return nil, fmt.Errorf("journal: checkpoint %s in %s: %w", info.Name, bucket, err)
		}
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b StreamCheckpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

func streamCheckpointOf(info *jetstream.ObjectInfo) (StreamCheckpoint, error) {
	sc := StreamCheckpoint{Name: info.Name, Bytes: info.Size}
	var err error
	if sc.Seq, err = strconv.ParseUint(info.Metadata[objSeq], 10, 64); err != nil || sc.Seq == 0 {
		return sc, fmt.Errorf("%w: %s %q", ErrCorrupt, objSeq, info.Metadata[objSeq])
	}
	h, err := hex.DecodeString(info.Metadata[objHash])
	if err != nil || len(h) != 32 {
		return sc, fmt.Errorf("%w: %s %q", ErrCorrupt, objHash, info.Metadata[objHash])
	}
	copy(sc.Hash[:], h)
	if sc.Time, err = time.Parse(time.RFC3339Nano, info.Metadata[objTime]); err != nil {
		return sc, fmt.Errorf("%w: %s: %w", ErrCorrupt, objTime, err)
	}
	return sc, nil
}

// FetchStreamCheckpoint reads sc's data whole from stream's bucket. The
// client checks the object's SHA-256 digest as it reads.
func FetchStreamCheckpoint(ctx context.Context, js jetstream.JetStream, stream string, sc StreamCheckpoint) (Checkpoint, error) {
	obs, err := js.ObjectStore(ctx, CheckpointBucket(stream))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("journal: checkpoints of stream %s: %w", stream, err)
	}
	data, err := obs.GetBytes(ctx, sc.Name)
	if err == nil && uint64(len(data)) != sc.Bytes {
		err = fmt.Errorf("%w: %d bytes, its metadata says %d", ErrCorrupt, len(data), sc.Bytes)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("journal: checkpoint at %d in %s: %w", sc.Seq, CheckpointBucket(stream), err)
	}
	return Checkpoint{Seq: sc.Seq, Hash: sc.Hash, Time: sc.Time, Data: data}, nil
}

// StartCheckpoint picks, of cps (oldest first), where a reader of a stream
// whose first record is first can start: a checkpoint at record first-1
// or later, so that the stream holds the record after it. newest picks the
// newest such (a standby: the fewest records to import), else the oldest
// (replay: the most history).
func StartCheckpoint(cps []StreamCheckpoint, first uint64, newest bool) (StreamCheckpoint, bool) {
	i := slices.IndexFunc(cps, func(c StreamCheckpoint) bool { return c.Seq+1 >= first })
	if i < 0 {
		return StreamCheckpoint{}, false
	}
	if newest {
		return cps[len(cps)-1], true
	}
	return cps[i], true
}

// StreamFirstRecord is the sequence of the record in stream's first
// message (0: the stream is empty). Records and stream messages are
// numbered alike only while one journal filled the stream from record 1.
func StreamFirstRecord(ctx context.Context, st jetstream.Stream) (uint64, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	msg, err := st.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		return 0, fmt.Errorf("journal: stream %s message %d: %w", info.Config.Name, info.State.FirstSeq, err)
	}
	r, err := DecodeRecord(msg.Data)
	if err != nil {
		return 0, fmt.Errorf("journal: stream %s message %d: %w", info.Config.Name, info.State.FirstSeq, err)
	}
	return r.Seq, nil
}

// ShipCheckpoints copies the journal's checkpoints to the stream's bucket
// until ctx ends: the newest one whose record the stream holds, once every
// has passed since the last copied (the first as soon as there is one:
// it looks at once, then every tenth of every, at most a minute apart),
// after which it deletes those no reader needs any more (thinBucket). It returns
// ctx.Err(). Like the outbox, it degrades and never stops the controller:
// NATS down, or the journal's newest checkpoint not yet published, only
// delays the next copy.
func (o *Outbox) ShipCheckpoints(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return errors.New("journal: ShipCheckpoints needs a positive interval")
	}
	tick := time.NewTicker(min(max(every/10, 100*time.Millisecond), time.Minute))
	defer tick.Stop()
	var shipped uint64
	var shippedAt, warnedAt time.Time
	for first := true; ; first = false {
		if !first { // at once at first: a leader that just started may hold the stream's only checkpoint
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
		if !shippedAt.IsZero() && time.Since(shippedAt) < every {
			continue
		}
		seq, err := o.ShipCheckpoint(ctx, shipped, every)
		switch {
		case err != nil && ctx.Err() == nil && time.Since(warnedAt) >= time.Minute:
			warnedAt = time.Now()
			o.opts.Logger.Warn("journal: checkpoint not shipped to the stream's bucket, will retry",
				"bucket", CheckpointBucket(o.opts.Stream.Name), "err", err)
		case err == nil && seq > shipped:
			shipped, shippedAt = seq, time.Now()
		}
	}
}

// ShipCheckpoint copies the journal's newest checkpoint whose record the
// stream holds to the stream's bucket, when it is past record after and
// not there yet, then thins the bucket (every: ShipCheckpoints' interval).
// It returns the checkpoint's record (after, when none is newer).
func (o *Outbox) ShipCheckpoint(ctx context.Context, after uint64, every time.Duration) (uint64, error) {
	infos, err := o.j.Checkpoints()
	if err != nil {
		return after, err
	}
	published := o.Published()
	i := slices.IndexFunc(infos, func(c CheckpointInfo) bool { return c.Seq > published }) - 1
	if i == -2 {
		i = len(infos) - 1
	}
	if i < 0 || infos[i].Seq <= after {
		return after, nil
	}
	c := infos[i]
	cctx, cancel := context.WithTimeout(ctx, o.opts.AckTimeout)
	obs, err := o.js.CreateOrUpdateObjectStore(cctx, jetstream.ObjectStoreConfig{
		Bucket:      CheckpointBucket(o.opts.Stream.Name),
		Description: "rollbook: checkpoints of the journal in stream " + o.opts.Stream.Name,
		Replicas:    o.opts.Stream.Replicas,
		Storage:     o.opts.Stream.Storage,
		// The server compresses what it stores (S2): a checkpoint's
		// CBOR repeats its field names and label sets pod after pod.
		Compression: o.opts.Stream.Storage == jetstream.FileStorage,
	})
	cancel()
	if err != nil {
		return after, fmt.Errorf("journal: checkpoint bucket: %w", err)
	}
	have, err := listCheckpoints(ctx, obs, CheckpointBucket(o.opts.Stream.Name), o.j.id)
	if err != nil {
		return after, err
	}
	if !slices.ContainsFunc(have, func(s StreamCheckpoint) bool { return s.Seq == c.Seq }) {
		sc, err := o.putCheckpoint(ctx, obs, c)
		if err != nil {
			return after, err
		}
		have = append(have, sc)
		slices.SortFunc(have, func(a, b StreamCheckpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	o.shipped.Store(max(o.shipped.Load(), c.Seq))
	st, err := o.js.Stream(ctx, o.opts.Stream.Name)
	if err != nil {
		return c.Seq, fmt.Errorf("journal: thinning the checkpoint bucket: %w", err)
	}
	first, err := StreamFirstRecord(ctx, st)
	if err != nil {
		return c.Seq, fmt.Errorf("journal: thinning the checkpoint bucket: %w", err)
	}
	for _, d := range thinBucket(have, first, every) {
		if err := obs.Delete(ctx, d.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return c.Seq, fmt.Errorf("journal: thinning the checkpoint bucket: %w", err)
		}
	}
	return c.Seq, nil
}

// Shipped is the record of the newest checkpoint ShipCheckpoint found in,
// or copied to, the stream's bucket; 0 before it first did.
func (o *Outbox) Shipped() uint64 { return o.shipped.Load() }

// putCheckpoint copies checkpoint c into obs a stretch at a time: the
// controller holds a stretch of it, not the checkpoint (megabytes at
// 10,000 pods), and holds the journal only while it reads one, so that a
// slow NATS server never holds up its Close.
func (o *Outbox) putCheckpoint(ctx context.Context, obs jetstream.ObjectStore, c CheckpointInfo) (StreamCheckpoint, error) {
	sc := StreamCheckpoint{Name: MsgID(o.j.id, c.Seq), Seq: c.Seq, Hash: c.Hash, Time: c.Time, Bytes: uint64(c.Bytes)}
	cp, got, ok, err := o.j.CopyCheckpoint(c.Seq)
	if err == nil && (!ok || got.Seq != c.Seq) {
		err = fmt.Errorf("journal: checkpoint %d was deleted before it was shipped", c.Seq)
	}
	if err != nil {
		return sc, err
	}
	_, err = obs.Put(ctx, jetstream.ObjectMeta{
		Name:        sc.Name,
		Description: fmt.Sprintf("the state folded from journal %s up to record %d", o.j.id, c.Seq),
		Metadata: map[string]string{
			objJournal: o.j.id,
			objSeq:     strconv.FormatUint(c.Seq, 10),
			objHash:    hex.EncodeToString(c.Hash[:]),
			objTime:    c.Time.UTC().Format(time.RFC3339Nano),
		},
	}, cp.Reader(1<<20))
	if err != nil {
		return sc, fmt.Errorf("journal: ship checkpoint %d: %w", c.Seq, err)
	}
	return sc, nil
}

// thinBucket says which of cps (a journal's checkpoints in its stream's
// bucket, oldest first) no reader needs, for a stream whose first record
// is first: those older than record first-1 (the stream no longer holds
// the record after them) once a newer one is there, and of the rest all
// but the newest two, the oldest, and the first in each span of time.
// A span is every doubled until sixteen cover what the rest cover, and
// spans are aligned to the clock: a longer span is then two shorter ones,
// and its first checkpoint one that was kept already, so that thinning
// never empties a stretch that an earlier thinning left one in. The
// bucket so holds about twenty checkpoints whatever the stream's age, as
// the journal thins its own (Retain), and replay of the stream starts
// within a span (an eighth of the stream at most) of its first record.
func thinBucket(cps []StreamCheckpoint, first uint64, every time.Duration) []StreamCheckpoint {
	i := slices.IndexFunc(cps, func(c StreamCheckpoint) bool { return c.Seq+1 >= first })
	if i < 0 {
		return nil // none a reader can start from: keep what there is
	}
	drop := slices.Clone(cps[:i])
	usable := cps[i:]
	if len(usable) <= 3 {
		return drop
	}
	span := every
	for 16*span < usable[len(usable)-1].Time.Sub(usable[0].Time) {
		span *= 2
	}
	kept := usable[0].Time.Truncate(span)
	for _, c := range usable[1 : len(usable)-2] {
		if cell := c.Time.Truncate(span); cell.After(kept) {
			kept = cell
			continue
		}
		drop = append(drop, c)
	}
	return drop
}
