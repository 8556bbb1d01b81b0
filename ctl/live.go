package ctl

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// The controller's journal API: a running controller holds its journal (a
// locked Pebble store), so readers on other machines read it through the
// controller, as the same records in the same chain.
//
//	GET JournalPath?from=N[&checkpoint=latest][&rollout=namespace/name]
//	Authorization: Bearer <the caller's Kubernetes token>
//
// The answer (LiveContentType) is one JSON header line (liveHeader), then
// each record from max(N, the journal's first) to the last committed when
// the request came, as a uvarint length and the record's stored bytes
// (journal.DecodeRecord reads them), then a zero length: the end. A
// stream without the end was cut, and the reader says so rather than
// pass a short history off as whole. With checkpoint=latest the stream
// starts after the journal's newest checkpoint instead, and its header
// carries that checkpoint: what a reader of the state now needs, without
// the history before it. With rollout, it starts where that rollout's
// current object first shows (history, trace and report need no record
// before it). A controller older than these parameters ignores them and
// sends every record, which folds to the same state and the same spans.
const (
	JournalPath     = "/api/v1/journal"
	LiveContentType = "application/x-rollbook-journal"
	// liveBatch records are read from the journal at a time.
	liveBatch = 4096
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
}

// JournalRequest is where a journal stream starts: at record From, or
// (Latest) after the journal's newest checkpoint. Rollout names a rollout
// ("namespace/name") whose current object's records are what the reader
// wants: the server raises From to where they begin when it knows
// (WriteJournal's caller, which holds the controller's books).
type JournalRequest struct {
	From    uint64
	Latest  bool
	Rollout string
}

// ParseJournalRequest reads the journal API's parameters: from, a
// sequence >= 1 (1 when absent), and checkpoint, whose one value is
// latest.
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
	return req, nil
}

// WriteJournal writes j's records as req asks in the journal API's
// format. It is the server's half of Live.
func WriteJournal(ctx context.Context, w io.Writer, j *journal.Journal, req JournalRequest) error {
	first := max(req.From, 1, j.First())
	var start *journal.Checkpoint
	if req.Latest {
		c, ok, err := j.LatestCheckpoint(0)
		if err != nil {
			return fmt.Errorf("ctl: the newest checkpoint: %w", err)
		}
		if ok {
			start, first = &c, c.Seq+1
		}
	}
	if start == nil && first > 1 && first == j.First() {
		c, ok, err := j.LatestCheckpoint(first - 1)
		if err == nil && (!ok || c.Seq != first-1) {
			err = fmt.Errorf("no checkpoint at record %d", first-1)
		}
		if err != nil {
			return fmt.Errorf("ctl: journal starts at record %d: %w", first, err)
		}
		start = &c
	}
	last, _ := j.Last()
	h := liveHeader{Journal: j.ID(), First: first, Last: last}
	if first > 1 {
		var anchor [32]byte
		if start != nil {
			anchor, h.Checkpoint = start.Hash, start.Data
		} else {
			err := j.Read(ctx, first-1, func(r journal.Record) error { anchor = r.Hash; return journal.ErrStop })
			if err != nil {
				return err
			}
		}
		h.Anchor = hex.EncodeToString(anchor[:])
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	head, err := json.Marshal(h)
	if err != nil {
		return err
	}
	bw.Write(append(head, '\n'))
	// Records are copied out of the journal a batch at a time and written
	// after: Read holds the journal open while it runs, and a slow reader
	// on the network must never hold up the controller's journal (its
	// Close, at a leadership change, waits for every Read).
	var n [binary.MaxVarintLen64]byte
	batch := make([][]byte, 0, liveBatch)
	for next := first; next <= last; {
		batch = batch[:0]
		err := j.Read(ctx, next, func(r journal.Record) error {
			if r.Seq != next {
				return fmt.Errorf("ctl: record %d was pruned while it was read", next)
			}
			v, err := r.Value()
			if err != nil {
				return err
			}
			batch, next = append(batch, v), next+1
			if len(batch) == liveBatch || next > last {
				return journal.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return fmt.Errorf("ctl: records from %d were pruned while they were read", next)
		}
		for _, v := range batch {
			bw.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
			if _, err := bw.Write(v); err != nil {
				return err
			}
		}
	}
	bw.Write(n[:binary.PutUvarint(n[:], 0)])
	return bw.Flush()
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
// first > 1 and the stream starts at one), then fn with every record.
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
	l.journalID = h.Journal
	var anchor [32]byte
	if h.First > 1 {
		b, err := hex.DecodeString(h.Anchor)
		if err != nil || len(b) != len(anchor) {
			return fmt.Errorf("ctl: the journal stream's anchor %q is not a hash", h.Anchor)
		}
		copy(anchor[:], b)
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

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
