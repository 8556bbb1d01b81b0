package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// Source reads a journal's records in order, from the start, as many
// times as asked: from a journal directory, a JSON-lines export (optionally
// gzipped), a NATS JetStream stream or a running controller's journal API
// (Live). Every source checks the hash chain as it goes, so an auditor on
// another machine replays exactly what was recorded or learns that it was
// not. Exactly one of Dir, Export, NATS.URL and Live is set.
type Source struct {
	Dir, Export string
	NATS        journal.NATSConfig
	Stream      string
	Live        *Live
}

// Describe names the source for messages.
func (s Source) Describe() string {
	switch {
	case s.Dir != "":
		return "journal " + s.Dir
	case s.Export != "":
		return "export " + s.Export
	case s.Live != nil:
		return "controller " + s.Live.URL
	}
	return "stream " + s.Stream + " at " + s.NATS.URL
}

// Set reports whether any source is named.
func (s Source) Set() bool {
	return s.Dir != "" || s.Export != "" || s.NATS.URL != "" || s.Live != nil
}

// Read calls fn with every record from the journal's first.
func (s Source) Read(ctx context.Context, fn func(journal.Record) error) error {
	return s.ReadFrom(ctx, nil, fn)
}

// ReadFrom is Read for a reader that folds state: a journal pruned by
// retention starts after a checkpoint, and base (when not nil) is given
// that checkpoint's books before the first record; for a source that
// starts at record 1 it is given empty books. A stream whose limits
// removed its first records starts after the oldest checkpoint beside it
// that it continues (StreamStart), an export of a pruned journal after
// the checkpoint it carries. The chain is checked from the
// checkpoint's anchor, so a pruned journal verifies as one that was not.
func (s Source) ReadFrom(ctx context.Context, base func(*projections.Books) error, fn func(journal.Record) error) error {
	return s.readFrom(ctx, &start{}, base, fn)
}

// ReadLatest is ReadFrom for a reader of the state as it is now (status,
// a dry run's plan): it starts at the source's newest checkpoint, as a
// restarting controller does, so what it reads does not grow with the
// journal's history (DESIGN: "every reader starts from the latest
// checkpoint"). A journal directory and a controller's journal API hold
// checkpoints, and a stream has the newest the controller shipped beside
// it; an export has at most the one its records follow, and is read from
// there, as is a controller too old to serve from its checkpoint from
// record 1. A newest
// checkpoint this binary cannot read is passed over for ReadFrom, as a
// restarting controller passes it over. Replay and the checkpoint audit
// need every record: they use ReadFrom.
func (s Source) ReadLatest(ctx context.Context, base func(*projections.Books) error, fn func(journal.Record) error) error {
	if base == nil {
		return s.ReadFrom(ctx, nil, fn)
	}
	err := s.readFrom(ctx, &start{latest: true}, base, fn)
	if errors.Is(err, errUnreadableStart) {
		return s.ReadFrom(ctx, base, fn)
	}
	return err
}

// ReadRolloutRecords calls fn with the records from where rollout's current
// object ("namespace/name") first shows, when the source can tell: in a
// journal directory, RolloutOrigin; a controller knows it (the journal
// API's rollout parameter). A stream, an export, a rollout with no object
// now (deleted) and a controller too old to know the parameter are read
// from the journal's first record. Objects that had the name before the
// current one are in the records before it (Read).
func (s Source) ReadRolloutRecords(ctx context.Context, rollout string, fn func(journal.Record) error) error {
	return s.readFrom(ctx, &start{rollout: rollout}, nil, fn)
}

// ReadForRollout is ReadFrom for a reader that folds state to look at one
// rollout (replay --rollout): a journal directory is read from its newest
// checkpoint at or before the record that first showed rollout's current
// object (RolloutOrigin), base given that checkpoint's books. Other
// sources, a rollout with no object now, one with no checkpoint before it
// and a checkpoint this binary cannot read are read as ReadFrom reads
// them; base's books say where the read starts (State.Seq).
func (s Source) ReadForRollout(ctx context.Context, rollout string, base func(*projections.Books) error, fn func(journal.Record) error) error {
	if s.Dir == "" || rollout == "" || base == nil {
		return s.ReadFrom(ctx, base, fn)
	}
	err := s.readFrom(ctx, &start{rollout: rollout}, base, fn)
	if errors.Is(err, errUnreadableStart) {
		return s.ReadFrom(ctx, base, fn)
	}
	return err
}

// start is where a read starts: from the journal's first record (or the
// checkpoint a pruned journal starts at), or after its newest checkpoint
// (latest), or at a rollout's first record.
type start struct {
	latest  bool
	rollout string
}

// errUnreadableStart: the newest checkpoint does not load; nothing was
// passed to base or fn yet.
var errUnreadableStart = errors.New("the newest checkpoint does not load")

// loadStart decodes c, the checkpoint a read starts after, into books.
func loadStart(c []byte, seq uint64, books *projections.Books) error {
	if err := journal.DecodeCheckpoint(c, books); err != nil {
		return err
	}
	if books.State.Seq != seq {
		return fmt.Errorf("it holds the state at record %d", books.State.Seq)
	}
	return nil
}

// RolloutOrigin is the record that first showed rollout's current object
// ("namespace/name"): as j's newest checkpoint says, or, for an object
// created since (the rollout an on-call engineer just started, most
// often), the first record after the checkpoint that shows it; 0 when
// neither does (no checkpoint, or no such object).
func RolloutOrigin(ctx context.Context, j *journal.Journal, rollout string) uint64 {
	c, ok, err := j.LatestCheckpoint(0)
	if err != nil || !ok {
		return 0
	}
	var books struct {
		Rollouts map[string]projections.RolloutOrigin
	} // not the fleet's state
	if journal.DecodeCheckpointPart(c.Data, &books) != nil {
		return 0
	}
	if o, ok := books.Rollouts[rollout]; ok {
		return o.Seq
	}
	// No object had the name at the checkpoint, so one that has it now
	// first shows after it: at most --checkpoint-every records to scan,
	// decoding only the rollout's own.
	ns, name, _ := strings.Cut(rollout, "/")
	key := ingest.Key(ingest.Rollouts.Name(), ns, name)
	var origin uint64
	err = j.Read(ctx, c.Seq+1, func(r journal.Record) error {
		if r.Key != key || r.Kind != journal.KindObserved {
			return nil
		}
		var o journal.Observed
		if journal.DecodeObserved(r.Body, &o) == nil && !o.Deleted {
			origin = r.Seq
			return journal.ErrStop
		}
		return nil
	})
	if err != nil {
		return 0
	}
	return origin
}

// dirStart is where a read of j starts, as st asks: the hash the first
// record read links to, and its sequence. With fold, books are loaded with
// the checkpoint the read starts after, if it starts after one.
func (s Source) dirStart(ctx context.Context, j *journal.Journal, st *start, fold bool, books *projections.Books) (prev [32]byte, next uint64, err error) {
	first := j.First()
	from := uint64(0)
	if st.rollout != "" {
		from = RolloutOrigin(ctx, j, st.rollout)
	}
	if from > first {
		if !fold {
			// Mid-chain: the link into from is checked against the hash
			// record from-1 holds, as the journal API does for from=N.
			err := j.Read(ctx, from-1, func(r journal.Record) error { prev = r.Hash; return journal.ErrStop })
			return prev, from, err
		}
		// A fold: from the newest checkpoint at or before the rollout's
		// first record (none: from record 1, as ReadFrom).
		c, ok, err := j.LatestCheckpoint(from - 1)
		if err != nil || ok && (c.Seq+1 < first || loadStart(c.Data, c.Seq, books) != nil) {
			return prev, 0, errUnreadableStart
		}
		if ok {
			return c.Hash, c.Seq + 1, nil
		}
	}
	if st.latest {
		c, ok, err := j.LatestCheckpoint(0)
		if err != nil || ok && loadStart(c.Data, c.Seq, books) != nil {
			return prev, 0, errUnreadableStart
		}
		if ok {
			return c.Hash, c.Seq + 1, nil
		}
	}
	if first == 1 {
		return prev, 1, nil
	}
	c, ok, err := j.LatestCheckpoint(first - 1)
	if err == nil && (!ok || c.Seq != first-1) {
		err = fmt.Errorf("no checkpoint at record %d", first-1)
	}
	if err == nil && fold {
		err = loadStart(c.Data, c.Seq, books)
	}
	if err != nil {
		return prev, 0, fmt.Errorf("%s starts at record %d (older records were pruned by retention): %w", s.Describe(), first, err)
	}
	return c.Hash, first, nil
}

func (s Source) readFrom(ctx context.Context, st *start, base func(*projections.Books) error, fn func(journal.Record) error) error {
	latest := st.latest
	var prev [32]byte
	var next uint64 = 1
	check := func(r journal.Record) error {
		if r.Seq != next {
			return fmt.Errorf("%s: record %d where %d was expected (gap or reorder)", s.Describe(), r.Seq, next)
		}
		if r.Prev != prev {
			return fmt.Errorf("%s: record %d does not link to record %d: %w", s.Describe(), r.Seq, r.Seq-1, journal.ErrBrokenChain)
		}
		prev, next = r.Hash, next+1
		return fn(r)
	}
	books := projections.NewBooks()
	switch {
	case s.Live != nil:
		req := JournalRequest{From: 1, Latest: latest, Rollout: st.rollout, Checkpoint: CheckpointInPieces}
		if base == nil {
			req.Checkpoint = CheckpointLeftOut // nothing to fold it into
		}
		return s.Live.readFrom(ctx, req, func(first uint64, anchor [32]byte, data []byte) error {
			if first > 1 {
				prev, next = anchor, first
				if base != nil {
					if err := loadStart(data, first-1, books); err != nil {
						if latest {
							return errUnreadableStart
						}
						return fmt.Errorf("%s: the checkpoint at record %d: %w", s.Describe(), first-1, err)
					}
				}
			}
			if base != nil {
				return base(books)
			}
			return nil
		}, check)
	case s.Dir != "":
		j, err := OpenExisting(s.Dir)
		if err != nil {
			return err
		}
		defer j.Close()
		if prev, next, err = s.dirStart(ctx, j, st, base != nil, books); err != nil {
			return err
		}
		if base != nil {
			if err := base(books); err != nil {
				return err
			}
		}
		return j.Read(ctx, next, check)
	case s.NATS.URL != "":
		// A stream whose limits removed its first records starts at a
		// checkpoint beside it, as a pruned journal does.
		js, st, closeConn, err := OpenJetStream(ctx, s.NATS, s.Stream)
		if err != nil {
			return err
		}
		var into *projections.Books
		if base != nil {
			into = books
		}
		c, ok, err := StreamStart(ctx, js, st, s.Stream, latest, into)
		closeConn()
		if err != nil && latest {
			return errUnreadableStart // ReadLatest reads as ReadFrom
		}
		if err != nil {
			return err
		}
		if ok {
			prev, next = c.Hash, c.Seq+1
		}
		if base != nil {
			if err := base(books); err != nil {
				return err
			}
		}
		return ReadStream(ctx, s.NATS, s.Stream, next, check)
	case s.Export != "":
		// An export of a pruned journal starts with the checkpoint its
		// records follow: base is given it, else empty books.
		based := base == nil
		begin := func() error {
			if based {
				return nil
			}
			based = true
			return base(books)
		}
		err := journal.ReadExport(s.Export, func(c journal.Checkpoint) error {
			prev, next = c.Hash, c.Seq+1
			if base != nil {
				if err := loadStart(c.Data, c.Seq, books); err != nil {
					return fmt.Errorf("%s: the checkpoint at record %d: %w", s.Describe(), c.Seq, err)
				}
			}
			return begin()
		}, func(r journal.Record) error {
			if err := begin(); err != nil {
				return err
			}
			return check(r)
		})
		if err != nil {
			return err
		}
		return begin() // an export of no record
	}
	return errors.New("no source: give --dir, --export or --nats-url")
}

// OpenExisting opens a journal a reader names. journal.Open creates an
// empty journal where there is none, so a mistyped --dir would read as a
// journal of 0 records; a reader says there is no journal there instead.
func OpenExisting(dir string) (*journal.Journal, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("no journal at %s: %w", dir, err)
	}
	return journal.Open(dir, journal.Options{})
}
