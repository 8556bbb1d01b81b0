package journal

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers set on every outbox message besides Nats-Msg-Id.
const (
	HeaderSeq  = "Rollbook-Seq"  // record sequence, decimal
	HeaderTime = "Rollbook-Time" // record time, RFC 3339 with nanoseconds
	HeaderKind = "Rollbook-Kind" // Kind.String()
	HeaderKey  = "Rollbook-Key"  // record key
	// HeaderHash is the record's chain hash, hex. The stream thereby anchors
	// the chain outside the journal's disk: a rewrite of the journal's last
	// records, checksums recomputed, still disagrees with the stream.
	HeaderHash = "Rollbook-Hash"
	// HeaderTraceParent is the W3C trace context header. NB: nats.Header is
	// case-sensitive and not canonicalised (unlike http.Header), and W3C
	// propagators look for the lower-case name.
	HeaderTraceParent = "traceparent"
)

// DefaultStreamName is the stream an outbox publishes to unless told.
const DefaultStreamName = "ROLLBOOK"

// ValidateStreamName checks a JetStream stream name (OutboxOptions.Stream.Name)
// for the characters the server refuses in one: the name is a token of the
// stream API's subjects ($JS.API.STREAM.INFO.<name>) and a directory of its
// store.
func ValidateStreamName(name string) error {
	if name == "" {
		return errors.New("journal: empty stream name")
	}
	if strings.ContainsAny(name, ". *>\t\r\n/\\") {
		return fmt.Errorf("journal: stream name %q must not contain '.', '*', '>', '/', '\\' or whitespace", name)
	}
	return nil
}

// OutboxOptions configure an Outbox. The zero value works with defaults.
type OutboxOptions struct {
	// Stream is the JetStream stream the outbox creates or updates. Name
	// defaults to DefaultStreamName, Subjects to SubjectPrefix+".>"; Retention,
	// MaxAge, MaxBytes, Replicas (3 for an R3 cluster), Duplicates and the
	// rest are passed as given (server defaults when zero; the duplicate
	// window defaults to 2 minutes there).
	Stream jetstream.StreamConfig
	// SubjectPrefix is the first token(s) of every subject; see Subject.
	// Defaults to DefaultSubjectPrefix.
	SubjectPrefix string
	// Window is how many publishes may await their ack at once. 0 means 1024.
	Window int
	// AckTimeout bounds the wait for one ack and for each stream API call.
	// 0 means 5s.
	AckTimeout time.Duration
	// CursorName names the journal cursor holding the last sequence known
	// to be in the stream. Defaults to "outbox/" + Stream.Name.
	CursorName string
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts while NATS is unreachable. 0 means 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// TraceParent, when set, returns the W3C traceparent for a record ("" for
	// none); it is sent as the lower-case "traceparent" header. The tracing
	// package derives it from the record (its trace ID comes from the
	// rollout UID), which is why this is a function of the record and not of
	// a context: publishing happens long after, and apart from, the append.
	TraceParent func(Record) string
	// Logger receives retry warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

func (o *OutboxOptions) setDefaults() error {
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if err := ValidateSubjectPrefix(o.SubjectPrefix); err != nil {
		return err
	}
	if o.Stream.Name == "" {
		o.Stream.Name = DefaultStreamName
	}
	if err := ValidateStreamName(o.Stream.Name); err != nil {
		return err
	}
	if len(o.Stream.Subjects) == 0 {
		o.Stream.Subjects = []string{o.SubjectPrefix + ".>"}
	}
	switch {
	case o.Window < 0:
		return fmt.Errorf("journal: OutboxOptions.Window is %d, must be >= 0", o.Window)
	case o.Window == 0:
		o.Window = 1024
	}
	switch {
	case o.AckTimeout < 0:
		return fmt.Errorf("journal: OutboxOptions.AckTimeout is %v, must be >= 0", o.AckTimeout)
	case o.AckTimeout == 0:
		o.AckTimeout = 5 * time.Second
	}
	if o.MinBackoff < 0 || o.MaxBackoff < 0 {
		return errors.New("journal: OutboxOptions backoff must be >= 0")
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		return fmt.Errorf("journal: OutboxOptions.MaxBackoff %v is below MinBackoff %v", o.MaxBackoff, o.MinBackoff)
	}
	if o.CursorName == "" {
		o.CursorName = "outbox/" + o.Stream.Name
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Outbox publishes committed records, in sequence order, to a JetStream
// stream.
//
// Guarantees, and how they are kept:
//   - Nothing is published before its commit returned: the outbox reads
//     records back from the journal, which never shows a record before the
//     committer's synced commit has returned.
//   - Appends never wait for the outbox: it is a reader like any other. When
//     NATS is down it retries with backoff and catches up from its cursor.
//   - No duplicates: each message carries Nats-Msg-Id = <journal ID>-<seq>,
//     so a republish inside the stream's duplicate window is dropped by the
//     server; and on every (re)start the outbox resumes after the last
//     record the stream actually holds, which covers restarts after the
//     window too.
//   - No gaps, no reordering: each message also carries
//     Nats-Expected-Last-Msg-Id = the previous record's ID, so the server
//     refuses a message whose predecessor was lost in flight (say, in a
//     reconnect) instead of storing it out of order. The outbox then resyncs
//     from the stream's last message.
//   - The cursor (OutboxOptions.CursorName) advances only over acknowledged
//     records.
//
// NB: the resync reads the stream's last message, so the outbox assumes it
// is the only writer of its stream's subjects. Another writer does not break
// it (the first message after a foreign one is sent without the expectation)
// but costs a resync each time they interleave.
type Outbox struct {
	j    *Journal
	nc   *nats.Conn
	js   jetstream.JetStream
	opts OutboxOptions

	published atomic.Uint64
	// shipped is the record of the newest checkpoint ShipCheckpoint
	// found in, or copied to, the stream's bucket.
	shipped atomic.Uint64
	running atomic.Bool
	// acked is closed, and replaced, whenever published advances
	// (WaitPublished); nil while nobody waits.
	ackMu sync.Mutex
	acked chan struct{}
}

// NewOutbox prepares an outbox over j publishing through nc. Nothing is
// sent until Run.
func NewOutbox(j *Journal, nc *nats.Conn, opts OutboxOptions) (*Outbox, error) {
	if j == nil || nc == nil {
		return nil, errors.New("journal: NewOutbox needs a journal and a NATS connection")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	// Room for the window plus futures abandoned by a resync that have not
	// resolved yet (they do within AckTimeout).
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout),
		jetstream.WithPublishAsyncMaxPending(2*opts.Window))
	if err != nil {
		return nil, fmt.Errorf("journal: outbox: %w", err)
	}
	o := &Outbox{j: j, nc: nc, js: js, opts: opts}
	if v, ok, err := j.Cursor(opts.CursorName); err != nil {
		return nil, err
	} else if ok {
		p, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("journal: outbox cursor %q holds %q: %w", opts.CursorName, v, err)
		}
		o.published.Store(p)
	}
	return o, nil
}

// Published is the highest sequence known to be in the stream.
func (o *Outbox) Published() uint64 { return o.published.Load() }

// WaitPublished waits until record seq is in the stream, or ctx ends.
func (o *Outbox) WaitPublished(ctx context.Context, seq uint64) error {
	for {
		o.ackMu.Lock()
		if o.acked == nil {
			o.acked = make(chan struct{})
		}
		ch := o.acked
		o.ackMu.Unlock()
		// Read after taking ch: an advance from here on closes it.
		if o.published.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (o *Outbox) setPublished(seq uint64) {
	o.published.Store(seq)
	o.ackMu.Lock()
	if o.acked != nil {
		close(o.acked)
		o.acked = nil
	}
	o.ackMu.Unlock()
}

// MsgID is the Nats-Msg-Id of record seq of journal id.
func MsgID(journalID string, seq uint64) string {
	return journalID + "-" + strconv.FormatUint(seq, 10)
}

// errResync asks for a resync without backoff: the server refused a message
// because its predecessor is not the stream's last.
var errResync = errors.New("journal: outbox: stream order changed, resyncing")

// Run publishes until ctx ends (returning ctx.Err()) or the journal closes
// (ErrClosed). Every other failure (NATS down for hours, auth refused, a
// stream holding records past the journal's end) is retried with backoff:
// the outbox degrades, it never stops the controller. Only one Run may be
// active at a time.
func (o *Outbox) Run(ctx context.Context) error {
	if !o.running.CompareAndSwap(false, true) {
		return errors.New("journal: outbox already running")
	}
	defer o.running.Store(false)
	defer o.js.CleanupPublisher()

	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(o.opts.MinBackoff),
		backoff.WithMaxInterval(o.opts.MaxBackoff),
		backoff.WithMaxElapsedTime(0), // never give up: NATS may be down for hours
	)
	for {
		before := o.published.Load()
		err := o.session(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrClosed):
			return err
		case errors.Is(err, errResync):
			bo.Reset()
			continue
		}
		if o.published.Load() != before {
			bo.Reset() // made progress: the next failure is a new one
		}
		d := bo.NextBackOff()
		o.opts.Logger.Warn("journal: outbox: publishing stalled, will retry",
			"stream", o.opts.Stream.Name, "published", o.published.Load(), "retry_in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// inflight is a published record awaiting its ack.
type inflight struct {
	seq uint64
	fut jetstream.PubAckFuture
}

// session ensures the stream, finds where to resume and publishes until
// an error. Futures still in flight when it returns are abandoned: the next
// session resumes from what the stream holds, not from them.
func (o *Outbox) session(ctx context.Context) error {
	if o.nc.IsClosed() {
		// Retried like any outage: the connection reconnects forever and
		// is closed only at shutdown, when ctx ends Run anyway.
		return errors.New("journal: outbox: NATS connection closed")
	}
	cctx, cancel := context.WithTimeout(ctx, o.opts.AckTimeout)
	stream, err := o.js.CreateOrUpdateStream(cctx, o.opts.Stream)
	cancel()
	if err != nil {
		return fmt.Errorf("journal: outbox: ensure stream %s: %w", o.opts.Stream.Name, err)
	}
	next, expect, lastSeq, err := o.resync(ctx, stream)
	if err != nil {
		return err
	}
	// Every publish names what it must follow, so a message lost in flight
	// cannot let a later one land out of order. A single-replica stream
	// checks the previous Msg-Id, which also catches a foreign message
	// slipped in between. NB: a replicated stream (nats-server 2.15) checks
	// an expected Msg-Id only as replicas apply the entry, and a mismatch
	// there halts the stream for good (journal/cluster_test.go); there the
	// leader's check of the expected sequence is used instead, which is
	// refused cleanly but cannot tell a foreign message from ours: a
	// replicated stream must have the outbox as its only writer.
	replicated := stream.CachedInfo().Config.Replicas > 1

	// window holds the publishes awaiting acks, oldest first, in buf. It is
	// refilled only once it is down to low, so one iterator (and one cursor
	// write) serves many records, while low keeps enough in flight that the
	// server never waits for us.
	buf := make([]inflight, 0, o.opts.Window)
	window := buf
	low := o.opts.Window / 2
	saved := o.published.Load()
	defer func() {
		// Save progress made since the last step, so a restart that cannot
		// trust the stream's last message (see resync) redoes little. Best
		// effort: on failure the stream still dedupes the redone records.
		if p := o.published.Load(); p != saved {
			_ = o.j.SetCursor(Cursor{Name: o.opts.CursorName, Value: strconv.FormatUint(p, 10)})
		}
	}()
	for {
		notify := o.j.Notify() // before reading: no commit slips between read and wait
		if hi := o.j.committed.Load(); len(window) <= low && next <= hi {
			window = append(buf[:0], window...) // move to the front: room to append
			err := o.j.scan(ctx, next, hi, func(r Record, raw []byte) error {
				id := MsgID(o.j.id, r.Seq)
				popts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
				switch {
				case replicated:
					popts = append(popts, jetstream.WithExpectLastSequence(lastSeq))
				case expect != "":
					popts = append(popts, jetstream.WithExpectLastMsgID(expect))
				}
				// NB: copy raw: it aliases Pebble's memory, and the client
				// keeps the message to resend it on "no responders".
				fut, err := o.js.PublishMsgAsync(o.message(r, append([]byte(nil), raw...)), popts...)
				if err != nil {
					return fmt.Errorf("journal: outbox: publish %d: %w", r.Seq, err)
				}
				window = append(window, inflight{seq: r.Seq, fut: fut})
				expect, lastSeq, next = id, lastSeq+1, r.Seq+1
				if len(window) == o.opts.Window {
					return ErrStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, ErrStop) {
				return err
			}
		}
		if len(window) == 0 {
			select {
			case <-notify:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var more <-chan struct{}
		if len(window) <= low {
			more = notify // refill while acks are pending, not only after
		}
		select {
		case <-window[0].fut.Ok():
			// Acks come back in publish order on one connection, so after
			// the head those already in are taken without blocking.
			n := 1
			for n < len(window) && len(window[n].fut.Err()) == 0 && ackReady(window[n].fut) {
				n++
			}
			acked := window[n-1].seq
			window = window[n:]
			// The cursor only saves a resync a little work (resync trusts
			// the stream's last message over it), so it is written in
			// steps, and always once the window is empty: an idle outbox's
			// cursor is exact.
			if len(window) == 0 || acked-saved > uint64(low) {
				if err := o.j.SetCursor(Cursor{Name: o.opts.CursorName, Value: strconv.FormatUint(acked, 10)}); err != nil {
					return err
				}
				saved = acked
			}
			o.setPublished(acked)
		case err := <-window[0].fut.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrCodeWrongLastMsgID || apiErr.ErrorCode == jsErrCodeWrongLastSequence) {
				o.opts.Logger.Info("journal: outbox: resyncing with stream", "stream", o.opts.Stream.Name, "seq", window[0].seq, "err", err)
				return errResync
			}
			return fmt.Errorf("journal: outbox: ack of %d: %w", window[0].seq, err)
		case <-more:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// jsErrCodeWrongLastMsgID is the server's "wrong last msg ID" error code
// (JSStreamWrongLastMsgIDErrF); nats.go has no constant for it.
const jsErrCodeWrongLastMsgID jetstream.ErrorCode = 10070

// jsErrCodeWrongLastSequence is "wrong last sequence": the stream's last
// message is not the one this publish expected to follow. NB: the outbox
// expects a sequence, not a Msg-Id: on a replicated stream (nats-server
// 2.15) a wrong expected-last-msg-id is found only when replicas apply the
// entry, and halts the stream for good; the expected sequence is checked by
// the leader before replication, and refused cleanly.
const jsErrCodeWrongLastSequence jetstream.ErrorCode = 10071

// ackReady reports whether fut has its ack, without blocking or consuming
// it for later readers. NB: Ok() hands out a channel holding at most the
// one ack; receiving from it consumes it, so the head is the only future
// whose channel is ever received from.
func ackReady(fut jetstream.PubAckFuture) bool {
	return len(fut.Ok()) > 0
}

// resync decides where publishing resumes: after the stream's last
// message if that is one of this journal's records, else after the cursor.
// It returns the next sequence and the Msg-Id the stream's last message
// must have for the next publish ("" for no expectation).
func (o *Outbox) resync(ctx context.Context, stream jetstream.Stream) (next uint64, expect string, lastSeq uint64, err error) {
	cursor := o.published.Load()
	cctx, cancel := context.WithTimeout(ctx, o.opts.AckTimeout)
	defer cancel()
	info, err := stream.Info(cctx)
	if err != nil {
		return 0, "", 0, fmt.Errorf("journal: outbox: stream info: %w", err)
	}
	if info.State.LastSeq == 0 {
		// Empty (new, or purged): resume after the cursor. NB: a stream
		// recreated empty after losing its store is indistinguishable from
		// one purged on purpose; we do not flood it with the whole journal.
		return cursor + 1, "", info.State.LastSeq, nil
	}
	msg, err := stream.GetMsg(cctx, info.State.LastSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return cursor + 1, "", info.State.LastSeq, nil
	}
	if err != nil {
		return 0, "", 0, fmt.Errorf("journal: outbox: read stream's last message %d: %w", info.State.LastSeq, err)
	}
	id := msg.Header.Get(jetstream.MsgIDHeader)
	tail, ok := strings.CutPrefix(id, o.j.id+"-")
	if !ok {
		// Another writer's message (or none with an ID): resume after the
		// cursor and send the first message without an expectation.
		return cursor + 1, "", info.State.LastSeq, nil
	}
	k, err := strconv.ParseUint(tail, 10, 64)
	if err != nil {
		return cursor + 1, "", info.State.LastSeq, nil
	}
	if last := o.j.committed.Load(); k > last {
		// A journal restored from an old backup, or a forged Msg-Id:
		// publishing would write over the stream's history. The outbox
		// waits (with backoff, saying why) until the journal passes that
		// record; the controller goes on rolling and gating meanwhile.
		return 0, "", 0, fmt.Errorf("journal: outbox: stream %s holds record %d but the journal ends at %d: waiting for the journal to pass it",
			o.opts.Stream.Name, k, last)
	}
	if k < cursor {
		// The server acknowledged messages it then lost (its default file
		// store acks before fsync). The journal still has them: republish.
		o.opts.Logger.Warn("journal: outbox: stream lost acknowledged records, republishing",
			"stream", o.opts.Stream.Name, "stream_last", k, "cursor", cursor)
	}
	if k != cursor {
		if err := o.j.SetCursor(Cursor{Name: o.opts.CursorName, Value: strconv.FormatUint(k, 10)}); err != nil {
			return 0, "", 0, err
		}
		o.setPublished(k)
	}
	return k + 1, id, info.State.LastSeq, nil
}

// message builds the NATS message for r; data is r's stored value, so a
// consumer decodes it with DecodeRecord and can check the chain itself.
func (o *Outbox) message(r Record, data []byte) *nats.Msg {
	h := nats.Header{}
	h.Set(HeaderSeq, strconv.FormatUint(r.Seq, 10))
	h.Set(HeaderTime, r.Time.Format(time.RFC3339Nano))
	h.Set(HeaderKind, r.Kind.String())
	h.Set(HeaderKey, r.Key)
	h.Set(HeaderHash, hex.EncodeToString(r.Hash[:]))
	if o.opts.TraceParent != nil {
		if tp := o.opts.TraceParent(r); tp != "" {
			h.Set(HeaderTraceParent, tp)
		}
	}
	return &nats.Msg{Subject: Subject(o.opts.SubjectPrefix, r), Header: h, Data: data}
}
