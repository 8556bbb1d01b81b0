package ctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// ReadStream reads a JetStream stream from the message of record from
// (1: the first) to the last one present when the read started, with an
// ordered consumer. Records and stream messages are numbered alike while
// one journal filled the stream from record 1 (the outbox does); a reader
// that checks the chain (Source) hears of it when they are not.
func ReadStream(ctx context.Context, cfg journal.NATSConfig, stream string, from uint64, fn func(journal.Record) error) error {
	st, closeConn, err := OpenStream(ctx, cfg, stream)
	if err != nil {
		return err
	}
	defer closeConn()
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || from > last {
		return nil // NB: a purged stream is empty with a last sequence
	}
	return ConsumeStream(ctx, st, "", max(from, 1), last, func(_ context.Context, r journal.Record) error { return fn(r) })
}

// ConsumeStream reads st from stream sequence from with an ordered
// consumer and passes each record of journal id ("": of any) to fn, until
// ctx ends (ctx's error), fn fails, or the message at stream sequence
// until (0: never) has been handled (nil). Messages of another journal
// (their Nats-Msg-Id says so) are passed over: a stream may be shared, or
// written to by mistake.
func ConsumeStream(ctx context.Context, st jetstream.Stream, id string, from, until uint64, fn func(context.Context, journal.Record) error) error {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	name := st.CachedInfo().Config.Name
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("stream %s: %w", name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		if id != "" && !strings.HasPrefix(msg.Headers().Get(jetstream.MsgIDHeader), id+"-") {
			if until != 0 && meta.Sequence.Stream >= until {
				return nil
			}
			continue
		}
		r, err := journal.DecodeRecord(msg.Data())
		if err != nil {
			return fmt.Errorf("stream %s message %d: %w", name, meta.Sequence.Stream, err)
		}
		if err := fn(ctx, r); err != nil {
			return err
		}
		if until != 0 && meta.Sequence.Stream >= until {
			return nil
		}
	}
}

// StreamJournalID returns the ID of the journal whose records a stream
// holds, from its last message's Nats-Msg-Id (journal.MsgID).
func StreamJournalID(ctx context.Context, cfg journal.NATSConfig, stream string) (string, error) {
	st, closeConn, err := OpenStream(ctx, cfg, stream)
	if err != nil {
		return "", err
	}
	defer closeConn()
	return streamJournalID(ctx, st, stream)
}

func streamJournalID(ctx context.Context, st jetstream.Stream, stream string) (string, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.State.LastSeq == 0 {
		return "", fmt.Errorf("stream %s is empty", stream)
	}
	msg, err := st.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return "", fmt.Errorf("stream %s message %d: %w", stream, info.State.LastSeq, err)
	}
	rec, err := journal.DecodeRecord(msg.Data)
	if err != nil {
		return "", fmt.Errorf("stream %s message %d: %w", stream, info.State.LastSeq, err)
	}
	id, ok := strings.CutSuffix(msg.Header.Get("Nats-Msg-Id"), fmt.Sprintf("-%d", rec.Seq))
	if !ok || id == "" {
		return "", fmt.Errorf("stream %s message %d: Nats-Msg-Id %q does not name record %d of a journal", stream, info.State.LastSeq, msg.Header.Get("Nats-Msg-Id"), rec.Seq)
	}
	return id, nil
}

// OpenStream connects to NATS and looks the stream up; closeConn ends the
// connection.
func OpenStream(ctx context.Context, cfg journal.NATSConfig, stream string) (st jetstream.Stream, closeConn func(), err error) {
	_, st, closeConn, err = OpenJetStream(ctx, cfg, stream)
	return st, closeConn, err
}

// OpenJetStream is OpenStream with the JetStream context too, for what
// lives beside the stream (its checkpoints).
func OpenJetStream(ctx context.Context, cfg journal.NATSConfig, stream string) (js jetstream.JetStream, st jetstream.Stream, closeConn func(), err error) {
	nc, err := journal.ConnectNATS(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	js, err = jetstream.New(nc)
	if err == nil {
		st, err = js.Stream(ctx, stream)
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	return js, st, nc.Close, nil
}

// StreamStart is where a reader of a stream starts when not at record 1:
// a checkpoint of the stream's journal in the stream's bucket, at the
// record before the stream's first or later. With newest, the newest
// such (a reader of the present: DESIGN, "every reader starts from the
// latest checkpoint"); else, and only when the stream's limits removed
// its record 1, the oldest (replay, history: the most the stream has).
// Its data is decoded into books, when not nil (a reader of records
// alone needs only its anchor): a checkpoint this binary cannot fold
// from is no start. ok is false when the read starts at record 1: the
// stream holds it, and no checkpoint is asked for or there is none.
func StreamStart(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, stream string, newest bool, books *projections.Books) (c journal.Checkpoint, ok bool, err error) {
	first, err := journal.StreamFirstRecord(ctx, st)
	if err != nil || first <= 1 && !newest {
		return c, false, err
	}
	cps, err := streamCheckpoints(ctx, js, st, stream)
	if err != nil && first <= 1 {
		return c, false, nil // the records are there; the bucket was a shortcut
	}
	if err != nil {
		return c, false, err
	}
	sc, found := journal.StartCheckpoint(cps, max(first, 1), newest)
	if !found && first <= 1 {
		return c, false, nil
	}
	if !found {
		return c, false, fmt.Errorf("stream %s starts at record %d (its limits removed the records before) and its bucket %s holds no checkpoint at record %d or later to start from; the controller ships one once its next checkpoint is in the stream",
			stream, first, journal.CheckpointBucket(stream), first-1)
	}
	c, err = journal.FetchStreamCheckpoint(ctx, js, stream, sc)
	if err != nil {
		return c, false, err
	}
	if books == nil {
		return c, true, nil
	}
	if err := loadStart(c.Data, c.Seq, books); err != nil {
		return c, false, fmt.Errorf("stream %s: the checkpoint at record %d in bucket %s: %w", stream, c.Seq, journal.CheckpointBucket(stream), err)
	}
	return c, true, nil
}

// streamCheckpoints lists the checkpoints of the stream's journal beside
// it, oldest first.
func streamCheckpoints(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, stream string) ([]journal.StreamCheckpoint, error) {
	id, err := streamJournalID(ctx, st, stream)
	if err != nil {
		return nil, err
	}
	return journal.ListStreamCheckpoints(ctx, js, stream, id)
}

// SeedFromStream starts j at the newest checkpoint beside stream when j
// holds nothing (no record, never pruned) and the stream's limits removed
// its record 1 (StreamStart), so that importing the stream's records
// continues the journal from there; it returns the checkpoint's record.
// Otherwise it returns 0 and leaves j as it is: a journal filled from a
// stream that holds record 1 then holds all the history it has.
func SeedFromStream(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, stream string, j *journal.Journal) (uint64, error) {
	if last, _ := j.Last(); last != 0 || j.First() != 1 {
		return 0, nil
	}
	first, err := journal.StreamFirstRecord(ctx, st)
	if err != nil || first <= 1 {
		return 0, err
	}
	// Decoded first: a journal seeded with a checkpoint this binary
	// cannot fold from would not start.
	c, _, err := StreamStart(ctx, js, st, stream, true, projections.NewBooks())
	if err != nil {
		return 0, err
	}
	if err := j.Seed(ctx, c); err != nil {
		return 0, err
	}
	return c.Seq, nil
}

// RestoreFromStream fills j from its stream as `journal restore` does:
// seeded first when the stream no longer holds record 1 (SeedFromStream),
// then every record after j's last, imported as it is, the chain checked
// at each. It returns where a seed started j (0: none) and how many
// records it imported.
func RestoreFromStream(ctx context.Context, j *journal.Journal, cfg journal.NATSConfig, stream string) (seeded, imported uint64, err error) {
	js, st, closeConn, err := OpenJetStream(ctx, cfg, stream)
	if err != nil {
		return 0, 0, err
	}
	seeded, err = SeedFromStream(ctx, js, st, stream, j)
	closeConn()
	if err != nil {
		return 0, 0, err
	}
	last, _ := j.Last()
	batch := make([]journal.Record, 0, 512)
	flush := func() error {
		imported += uint64(len(batch))
		err := j.Import(ctx, batch...)
		batch = batch[:0]
		return err
	}
	err = ReadStream(ctx, cfg, stream, last+1, func(r journal.Record) error {
		if r.Seq <= last {
			return nil
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return seeded, imported, err
}
