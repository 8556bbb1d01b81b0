package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
)

func journalCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: rollbook journal tail|export|verify|truncate|restore --dir DIR")
	}
	fs := flag.NewFlagSet("journal "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "rollbook-journal", "journal directory")
	from := fs.Uint64("from", 1, "first sequence (export, tail)")
	follow := fs.Bool("follow", false, "tail: keep printing new records")
	after := fs.Int64("after", -1, "truncate: keep records up to this sequence (the last good one `verify` names), remove the rest")
	chainOnly := fs.Bool("chain-only", false, "verify: check the chain and the checkpoints' anchors only, not that each checkpoint holds the fold of its records")
	rewrite := fs.Bool("rewrite-checkpoints", false, "verify: write a checkpoint that does not hold the fold of its records again from them (stop the controller first)")
	var stream recordSource
	fs.StringVar(&stream.nats.URL, "nats-url", "", "restore: the NATS server whose stream holds this journal; verify: read the records a pruned journal no longer holds from it, to check the checkpoint it starts at")
	fs.StringVar(&stream.nats.CredsFile, "nats-creds", "", "restore, verify: NATS credentials file")
	fs.StringVar(&stream.stream, "stream", "ROLLBOOK", "restore, verify: JetStream stream name")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "truncate":
		if *after < 0 {
			return errors.New("journal truncate: --after is required: the last good record, e.g. the one before what `rollbook journal verify` reports")
		}
		n, err := journal.Truncate(*dir, uint64(*after), journal.Options{})
		if err != nil {
			return err
		}
		fmt.Printf("removed %d records after %d; refill from the stream with `rollbook journal restore --dir %s --nats-url …`\n", n, *after, *dir)
		return nil
	case "restore":
		return restoreJournal(ctx, *dir, stream)
	}
	j, err := openExisting(*dir)
	if err != nil {
		return err
	}
	defer j.Close()
	switch args[0] {
	case "verify":
		verified := func(n uint64) {
			seq, hash := j.Last()
			fmt.Printf("ok: %d records, chain verified, last sequence %d, head %s\n", n, seq, hex.EncodeToString(hash[:8]))
		}
		var earlier *ctl.Source
		if stream.nats.URL != "" {
			src := stream.source()
			earlier = &src
		}
		if *chainOnly || *rewrite {
			// The chain first, on every core; a checkpoint is rewritten
			// only from a journal verified whole.
			n, err := j.Verify(ctx)
			if err != nil {
				return fmt.Errorf("chain broken after %d good records: %w", n, err)
			}
			verified(n)
			if *chainOnly {
				return nil
			}
			return auditCheckpoints(ctx, j, *dir, ctl.AuditOptions{Rewrite: true, Earlier: earlier}, nil)
		}
		// One read: the chain verified as the checkpoints are audited.
		return auditCheckpoints(ctx, j, *dir, ctl.AuditOptions{Chain: true, Earlier: earlier}, verified)
	case "export":
		w := bufio.NewWriter(os.Stdout)
		err := exportJournal(ctx, j, w, *from)
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		return err
	case "tail":
		w := bufio.NewWriter(os.Stdout)
		defer w.Flush()
		enc := json.NewEncoder(w)
		fn := func(r journal.Record) error {
			line, err := exportRecord(r)
			if err != nil {
				return err
			}
			if err := enc.Encode(line); err != nil {
				return err
			}
			return w.Flush()
		}
		if *follow {
			return j.Follow(ctx, *from, fn)
		}
		return j.Read(ctx, *from, fn)
	}
	return fmt.Errorf("unknown journal command %q: use tail, export, verify, truncate or restore", args[0])
}

// auditCheckpoints checks that every checkpoint holds the fold of the
// records before it (ctl.AuditCheckpoints) and says so. With o.Chain it
// says first that the chain verified (verified), or where it broke.
func auditCheckpoints(ctx context.Context, j *journal.Journal, dir string, o ctl.AuditOptions, verified func(records uint64)) error {
	a, err := ctl.AuditCheckpoints(ctx, j, o)
	if ce, ok := errors.AsType[*ctl.ChainError](err); ok {
		return fmt.Errorf("chain broken after %d good records: %w", ce.Records, ce.Err)
	}
	if verified != nil && a.Verified {
		verified(a.Records)
	}
	if ce, ok := errors.AsType[*ctl.CheckpointError](err); ok {
		if ce.Seq+1 == j.First() {
			return fmt.Errorf("%w\nthe journal starts at this checkpoint (older records were pruned), so every state folded here since started from another: "+
				"stop the controller, rebuild the journal from the stream with `rollbook journal restore --dir <new directory> --nats-url …` and run the controller on that", ce)
		}
		if !o.Rewrite {
			return fmt.Errorf("%w\nthe records are intact, but a controller that restarts from this checkpoint starts from another state than they hold: "+
				"stop the controller and run `rollbook journal verify --dir %s --rewrite-checkpoints` to write it again from the records", ce, dir)
		}
	}
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	from := "record 1"
	switch {
	case a.Earlier != "" && a.EarlierFrom > 0:
		from = fmt.Sprintf("the checkpoint at record %d beside %s, taken on trust (the stream's limits removed the records before it), and the records after it up to record %d, where the pruned journal starts, from the stream", a.EarlierFrom, a.Earlier, j.First())
	case a.Earlier != "":
		from = fmt.Sprintf("record 1 (those before record %d, where the pruned journal starts, from %s)", j.First(), a.Earlier)
	case a.From > 0:
		from = fmt.Sprintf("the checkpoint at record %d, where the pruned journal starts, taken on trust (--nats-url checks it against the stream)", a.From)
	}
	switch {
	case len(a.Checked)+len(a.Rewritten) == 0:
		fmt.Println("checkpoints: none after " + from)
	default:
		fmt.Printf("checkpoints: %d of %d (at records %v) hold the fold of the records before them, folded from %s\n",
			len(a.Checked), len(a.Checked)+len(a.Rewritten), append(a.Checked, a.Rewritten...), from)
	}
	if len(a.Reencoded) > 0 {
		fmt.Printf("checkpoints %v: written in an older encoding, the same state\n", a.Reencoded)
	}
	if len(a.Rewritten) > 0 {
		fmt.Printf("checkpoints %v: did not hold the fold, written again from the records\n", a.Rewritten)
	}
	return nil
}

// restoreJournal refills the journal in dir (created if missing, with the
// stream's journal ID) from its NATS stream: every record after the
// journal's last, imported as it is, the chain checked at each. A new
// journal whose stream no longer holds record 1 starts at the newest
// checkpoint beside the stream.
func restoreJournal(ctx context.Context, dir string, src recordSource) error {
	if src.nats.URL == "" {
		return errors.New("journal restore: --nats-url is required")
	}
	id, err := streamJournalID(ctx, src.nats, src.stream)
	if err != nil {
		return err
	}
	j, err := journal.Open(dir, journal.Options{ID: id})
	if err != nil {
		return err
	}
	defer j.Close()
	if j.ID() != id {
		return fmt.Errorf("journal restore: %s is journal %s, the stream holds journal %s", dir, j.ID(), id)
	}
	start, _ := j.Last()
	seeded, _, err := ctl.RestoreFromStream(ctx, j, src.nats, src.stream)
	if seeded > 0 {
		fmt.Printf("the stream starts after record %d: the journal starts at its checkpoint there, from bucket %s\n", seeded, journal.CheckpointBucket(src.stream))
		start = seeded
	}
	if err != nil {
		return fmt.Errorf("journal restore: %w", err)
	}
	if _, err := j.Verify(ctx); err != nil {
		return fmt.Errorf("journal restore: the restored journal does not verify: %w", err)
	}
	seq, hash := j.Last()
	fmt.Printf("restored records %d..%d from stream %s: journal %s ends at %d, head %s\n", start+1, seq, src.stream, id, seq, hex.EncodeToString(hash[:8]))
	return nil
}

// exportJournal writes j's records from record from (or the first the
// journal holds) to w as JSON lines. When they start after record 1 at a
// checkpoint (a pruned journal's start; --from right after one), that
// checkpoint comes first, on a line of its own: a reader of the export
// starts from it (replay --export), as a reader of the journal does.
func exportJournal(ctx context.Context, j *journal.Journal, w io.Writer, from uint64) error {
	enc := json.NewEncoder(w)
	if start := max(from, j.First()); start > 1 {
		c, ok, err := j.LatestCheckpoint(start - 1)
		if err != nil {
			return err
		}
		if ok && c.Seq == start-1 {
			if err := enc.Encode(journal.ExportCheckpointLine(c)); err != nil {
				return err
			}
		}
	}
	return j.Read(ctx, from, func(r journal.Record) error {
		line, err := exportRecord(r)
		if err != nil {
			return err
		}
		return enc.Encode(line)
	})
}

// exportRecord is a record as one JSON line, its body decoded.
func exportRecord(r journal.Record) (map[string]any, error) {
	raw, err := r.Value()
	if err != nil {
		return nil, err
	}
	out := map[string]any{
		"seq": r.Seq, "time": r.Time.UTC().Format(time.RFC3339Nano), "kind": r.Kind.String(), "key": r.Key,
		"hash": hex.EncodeToString(r.Hash[:]),
		// raw is the stored record: `rollbook replay --export` reads it
		// back and checks the chain; the rest is for people and jq.
		"raw": raw,
	}
	var body any
	switch r.Kind {
	case journal.KindObserved:
		body = &journal.Observed{}
	case journal.KindVanished:
		body = &journal.Vanished{}
	case journal.KindTick:
		body = &journal.TickFact{}
	case journal.KindCursor:
		body = &journal.CursorFact{}
	case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
		body = &journal.ActionFact{}
	default:
		return nil, fmt.Errorf("record %d: %w: %v", r.Seq, journal.ErrUnknownKind, r.Kind)
	}
	if err := r.Decode(body); err != nil {
		return nil, fmt.Errorf("record %d: %w", r.Seq, err)
	}
	out["body"] = body
	return out, nil
}
