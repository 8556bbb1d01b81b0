package ctl

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// The controller's journal API: a running controller holds its journal (a
// locked Pebble store), so readers on other machines read it through the
// controller, as the same records in the same chain.
//
//	GET JournalPath?from=N[&checkpoint=latest][&rollout=namespace/name][&checkpoint-data=pieces|none]
//	Authorization: Bearer <the caller's Kubernetes token>
//
// The answer (LiveContentType) is one JSON header line (liveHeader), then
// each record from max(N, the journal's first) to the last committed when
// the request came, as a uvarint length and the record's stored bytes
// (journal.DecodeRecord reads them), then a zero length: the end. A
// stream without the end was cut, and the reader says so rather than
// pass a short history off as whole. With checkpoint=latest the stream
// starts after the journal's newest checkpoint instead, and carries that
// checkpoint: what a reader of the state now needs, without the history
// before it. With rollout, it starts where that rollout's current object
// first shows (history, trace and report need no record before it). A
// controller older than these parameters ignores them and sends every
// record, which folds to the same state and the same spans.
//
// A stream that starts after a checkpoint (checkpoint=latest, or a journal
// that retention pruned) carries it as checkpoint-data asks: pieces, after
// the header line and before the records, each a uvarint length and its
// bytes, then a zero length; none, not at all (a reader that folds no
// state needs only the anchor); absent (what readers older than the
// parameter send), in the header, as base64. In each form the controller
// reads it from the journal and sends it a stretch at a time: at 100,000
// pods a checkpoint is ~150 MB, its base64 200 MB, and a controller that
// held them for every reader of its state would meet its memory limit
// with a few of them.
const (
	JournalPath     = "/api/v1/journal"
	LiveContentType = "application/x-rollbook-journal"
	// liveBatch records are read from the journal at a time.
	liveBatch = 4096
	// liveStretch bytes of a checkpoint are read from the journal at a
	// time.
	liveStretch = 1 << 20
)

// How the checkpoint a journal stream starts after is sent
// (JournalRequest.Checkpoint, the checkpoint-data parameter).
const (
	CheckpointInHeader = ""       // in the header line, base64
	CheckpointInPieces = "pieces" // after the header line, in pieces
	CheckpointLeftOut  = "none"   // not sent
)

// liveHeader opens a journal stream. Anchor is the hash of the record
// before First (the chain continues from it); when First follows a
// checkpoint the stream starts at (the journal's first record, retention
// having pruned what came before, or checkpoint=latest), Checkpoint holds
// the checkpoint's folded books.
type liveHeader struct {
	Journal    string `json:"journal"`
	First      uint64 `json:"first"`
	Last       uint64 `json:"last"`
	Anchor     string `json:"anchor,omitempty"`
	Checkpoint []byte `json:"checkpoint,omitempty"`
	// Pieces: the checkpoint follows the header in pieces, CheckpointBytes
	// in all.
	Pieces          bool   `json:"pieces,omitempty"`
	CheckpointBytes uint64 `json:"checkpoint_bytes,omitempty"`
}

// JournalRequest is where a journal stream starts: at record From, or
// (Latest) after the journal's newest checkpoint. Rollout names a rollout
// ("namespace/name") whose current object's records are what the reader
// wants: the server raises From to where they begin when it knows
// (WriteJournal's caller, which holds the controller's books). Checkpoint
// is how the checkpoint the stream starts after is sent
// (CheckpointInHeader, CheckpointInPieces, CheckpointLeftOut).
type JournalRequest struct {
	From       uint64
	Latest     bool
	Rollout    string
	Checkpoint string
}

// ParseJournalRequest reads the journal API's parameters: from, a
// sequence >= 1 (1 when absent); checkpoint, whose one value is latest;
// rollout; and checkpoint-data, pieces or none.
func ParseJournalRequest(q url.Values) (JournalRequest, error) {
	req := JournalRequest{From: 1}
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return req, fmt.Errorf("from=%q: want a record sequence, 1 or more", s)
		}
		req.From = n
	}
	req.Rollout = q.Get("rollout")
	switch c := q.Get("checkpoint"); c {
	case "":
	case "latest":
		req.Latest = true
	default:
		return req, fmt.Errorf("checkpoint=%q: the one value is latest (start after the newest checkpoint)", c)
	}
	switch d := q.Get("checkpoint-data"); d {
	case CheckpointInHeader, CheckpointInPieces, CheckpointLeftOut:
		req.Checkpoint = d
	default:
		return req, fmt.Errorf("checkpoint-data=%q: pieces (after the header) or none (not sent); absent, in the header", d)
	}
	return req, nil
}

// WriteJournal writes j's records as req asks in the journal API's
// format. It is the server's half of Live.
func WriteJournal(ctx context.Context, w io.Writer, j *journal.Journal, req JournalRequest) error {
	first := max(req.From, 1, j.First())
	var start *journal.CheckpointCopy
	var info journal.CheckpointInfo
	if req.Latest {
		c, ci, ok, err := j.CopyCheckpoint(0)
		if err != nil {
			return fmt.Errorf("ctl: the newest checkpoint: %w", err)
		}
		if ok {
			start, info, first = c, ci, ci.Seq+1
		}
	}
	if start == nil && first > 1 && first == j.First() {
		c, ci, ok, err := j.CopyCheckpoint(first - 1)
		if err == nil && (!ok || ci.Seq != first-1) {
			err = fmt.Errorf("no checkpoint at record %d", first-1)
		}
		if err != nil {
			return fmt.Errorf("ctl: journal starts at record %d: %w", first, err)
		}
		start, info = c, ci
	}
	last, _ := j.Last()
	h := liveHeader{Journal: j.ID(), First: first, Last: last}
	if first > 1 {
		anchor := info.Hash
		if start == nil {
			err := j.Read(ctx, first-1, func(r journal.Record) error { anchor = r.Hash; return journal.ErrStop })
			if err != nil {
				return err
			}
		}
		h.Anchor = hex.EncodeToString(anchor[:])
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := writeHeader(bw, h, start, info, req.Checkpoint); err != nil {
		return err
	}
	// Records are copied out of the journal a batch at a time and written
	// after: Read holds the journal open while it runs, and a slow reader
	// on the network must never hold up the controller's journal (its
	// Close, at a leadership change, waits for every Read). A batch is
	// copied as stored, framed, into one buffer that the next reuses.
	var n [binary.MaxVarintLen64]byte
	var batch []byte
	for next := first; next <= last; {
		batch = batch[:0]
		count := 0
		err := j.ReadStored(ctx, next, func(r journal.Record, stored []byte) error {
			if r.Seq != next {
				return fmt.Errorf("ctl: record %d was pruned while it was read", next)
			}
			batch = append(binary.AppendUvarint(batch, uint64(len(stored))), stored...)
			count, next = count+1, next+1
			if count == liveBatch || next > last {
				return journal.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if count == 0 {
			return fmt.Errorf("ctl: records from %d were pruned while they were read", next)
		}
		if _, err := bw.Write(batch); err != nil {
			return err
		}
	}
	bw.Write(n[:binary.PutUvarint(n[:], 0)])
	return bw.Flush()
}

// writeHeader writes the header line h and the checkpoint the stream
// starts after (start, nil for none) as form says. The checkpoint is read
// from the journal a stretch at a time, each written before the next is
// read: the controller holds a stretch per reader, not the checkpoint,
// and a slow reader does not hold up the journal.
func writeHeader(bw *bufio.Writer, h liveHeader, start *journal.CheckpointCopy, info journal.CheckpointInfo, form string) error {
	line := func(h liveHeader) error {
		b, err := json.Marshal(h)
		if err != nil {
			return err
		}
		_, err = bw.Write(append(b, '\n'))
		return err
	}
	if start == nil || form == CheckpointLeftOut {
		return line(h)
	}
	var buf []byte
	stretches := func(fn func([]byte) error) error {
		for {
			var err error
			buf, err = start.Next(buf[:0], liveStretch)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := fn(buf); err != nil {
				return err
			}
		}
	}
	var n [binary.MaxVarintLen64]byte
	if form == CheckpointInPieces {
		h.Pieces, h.CheckpointBytes = true, uint64(info.Bytes)
		if err := line(h); err != nil {
			return err
		}
		err := stretches(func(p []byte) error {
			if len(p) == 0 {
				return nil // a zero length ends the pieces
			}
			bw.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
			_, err := bw.Write(p)
			return err
		})
		if err != nil {
			return err
		}
		_, err = bw.Write(n[:binary.PutUvarint(n[:], 0)])
		return err
	}
	// In the header, as encoding/json writes a []byte (base64, padded),
	// encoded as it is read.
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	bw.Write(b[:len(b)-1]) // without its closing brace
	bw.WriteString(`,"checkpoint":"`)
	enc := base64.NewEncoder(base64.StdEncoding, bw)
	if err := stretches(func(p []byte) error { _, err := enc.Write(p); return err }); err != nil {
		return err
	}
	enc.Close()
	_, err = bw.WriteString("\"}\n")
	return err
}

// Live reads a running controller's journal through its journal API. The
// Client carries the caller's Kubernetes credentials (a bearer token):
// the controller asks the apiserver who the caller is and whether they
// may read the journal.
type Live struct {
	// URL is the controller's HTTP address, e.g. http://127.0.0.1:8080
	// (kubectl port-forward to the rollbook Service's http port).
	URL    string
	Client *http.Client
	// journalID is the ID of the journal last read.
	journalID string
}

// readFrom asks for the stream req names and calls header with its first
// sequence, the hash it links to and the checkpoint it starts after (when
// first > 1, the stream starts at one, and req does not leave it out),
// then fn with every record.
func (l *Live) readFrom(ctx context.Context, req JournalRequest, header func(first uint64, anchor [32]byte, checkpoint []byte) error, fn func(journal.Record) error) error {
	u, err := url.Parse(strings.TrimSuffix(l.URL, "/") + JournalPath)
	if err != nil {
		return fmt.Errorf("ctl: the controller address %q: %w", l.URL, err)
	}
	q := url.Values{"from": {strconv.FormatUint(max(req.From, 1), 10)}}
	if req.Latest {
		q.Set("checkpoint", "latest")
	}
	if req.Rollout != "" {
		q.Set("rollout", req.Rollout)
	}
	if req.Checkpoint != CheckpointInHeader {
		q.Set("checkpoint-data", req.Checkpoint)
	}
	u.RawQuery = q.Encode()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	hreq.Header.Set("Accept", LiveContentType)
	c := l.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(hreq)
	if err != nil {
		return fmt.Errorf("ctl: the controller's journal API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("ctl: the controller at %s answered %s: %s", l.URL, resp.Status, strings.TrimSpace(string(msg)))
	}
	if ct := resp.Header.Get("Content-Type"); ct != LiveContentType {
		return fmt.Errorf("ctl: %s is not a Rollbook controller's journal API (Content-Type %q)", u, ct)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("ctl: the journal stream's header: %w", err)
	}
	var h liveHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return fmt.Errorf("ctl: the journal stream's header: %w", err)
	}
	line = nil // an older controller's checkpoint is in it, decoded into h: it may go
	l.journalID = h.Journal
	var anchor [32]byte
	if h.First > 1 {
		b, err := hex.DecodeString(h.Anchor)
		if err != nil || len(b) != len(anchor) {
			return fmt.Errorf("ctl: the journal stream's anchor %q is not a hash", h.Anchor)
		}
		copy(anchor[:], b)
	}
	if h.Pieces {
		if h.Checkpoint, err = l.readPieces(br, h, req.Checkpoint != CheckpointLeftOut); err != nil {
			return err
		}
	}
	if req.Checkpoint == CheckpointLeftOut {
		h.Checkpoint = nil // a controller older than checkpoint-data sent it all the same
	}
	if err := header(h.First, anchor, h.Checkpoint); err != nil {
		return err
	}
	h.Checkpoint = nil // decoded by header: its encoding may go
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("ctl: the journal stream from %s was cut before record %d: %w", l.URL, h.Last, noEOF(err))
		}
		if n == 0 {
			return nil
		}
		if n > 64<<20 {
			return fmt.Errorf("ctl: the journal stream announces a record of %d bytes", n)
		}
		// A buffer per record: a decoded record may alias it, and fn may
		// keep records.
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("ctl: the journal stream from %s was cut: %w", l.URL, noEOF(err))
		}
		r, err := journal.DecodeRecord(buf)
		if err != nil {
			return fmt.Errorf("ctl: the journal stream: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}

// readPieces reads a checkpoint sent in pieces after h, and returns it
// when keep is set (else passes over it).
func (l *Live) readPieces(br *bufio.Reader, h liveHeader, keep bool) ([]byte, error) {
	var data []byte
	if keep {
		// NB: a bound on what is reserved up front, for a header that
		// is wrong.
		data = make([]byte, 0, min(h.CheckpointBytes, 1<<30))
	}
	cut := func(err error) error {
		return fmt.Errorf("ctl: the journal stream from %s was cut in the checkpoint at record %d: %w", l.URL, h.First-1, noEOF(err))
	}
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, cut(err)
		}
		if n == 0 {
			if keep && uint64(len(data)) != h.CheckpointBytes {
				return nil, fmt.Errorf("ctl: the checkpoint at record %d came as %d bytes, its header says %d", h.First-1, len(data), h.CheckpointBytes)
			}
			return data, nil
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("ctl: the journal stream announces a checkpoint piece of %d bytes", n)
		}
		if !keep {
			if _, err := br.Discard(int(n)); err != nil {
				return nil, cut(err)
			}
			continue
		}
		at := len(data)
		data = slices.Grow(data, int(n))[:at+int(n)]
		if _, err := io.ReadFull(br, data[at:]); err != nil {
			return nil, cut(err)
		}
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
