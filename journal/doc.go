// Package journal is Rollbook's append-only log: every object seen, every
// tick and every action intended and done, as checksummed, hash-chained
// records in a Pebble store, published afterwards to a NATS JetStream
// stream.
//
// # The caller's loop
//
// Ingest turns watch events into entries and appends them together with the
// watch's cursor, so a restart resumes the watch exactly after what the
// journal holds:
//
//	j, err := journal.Open(dir, journal.Options{})
//	...
//	defer j.Close()
//	body, _ := journal.EncodeBody(observed) // a journal.Observed
//	recs, err := j.Append(ctx,
//		[]journal.Cursor{{Name: "watch/pods", Value: rv}}, // same batch as the records
//		journal.Entry{Kind: journal.KindObserved, Key: "pods/shop/web-0", Body: body})
//	// err == nil: recs are durable (fsynced), numbered and chained.
//
//	rv, ok, err := j.Cursor("watch/pods") // on restart: where to resume the watch
//
// Projections fold the log from any sequence and then follow it:
//
//	err := j.Follow(ctx, state.NextSeq, func(r journal.Record) error {
//		return state.Apply(r) // pure fold; decode with r.Decode(&v)
//	})
//
// The outbox ships committed records to JetStream; it runs beside the
// appenders and never slows them down:
//
//	ns, err := journal.StartEmbeddedNATS(filepath.Join(dir, "nats")) // or an external URL
//	nc, err := journal.ConnectNATS(journal.NATSConfig{Embedded: ns})
//	ob, err := journal.NewOutbox(j, nc, journal.OutboxOptions{})
//	go ob.Run(ctx) // retries while NATS is down, catches up after
//
// `rollbook journal verify` is:
//
//	n, err := j.Verify(ctx) // *LinkError names the first broken record
//
// # Format
//
// A record is stored under 'L' + its 8-byte big-endian sequence as
//
//	version byte (1) | CBOR array [seq, unix-nanos, kind, key, body, prev] | CRC-32C
//
// CBOR is core deterministic (RFC 8949 §4.2.1), so equal records encode to
// equal bytes. A record's Hash is SHA-256(prev || CBOR array): it is never
// stored, always recomputed, so it cannot disagree with the bytes. Bodies
// use the same CBOR rules (EncodeBody, DecodeBody). An unknown version,
// a bad checksum or an unknown kind is an error (ErrCorrupt,
// ErrUnknownKind), never a skip. The same stored bytes are the payload of
// the outbox's NATS messages, so a consumer of the stream decodes them with
// DecodeRecord and can check the chain on its own.
//
// # Durability
//
// Appends are group-committed: one committer goroutine gathers concurrent
// Append calls into one Pebble batch and one fsync, so throughput grows with
// the number of concurrent writers while each caller still returns only
// after its own records are on disk. Readers (Read, Follow, the outbox)
// never see a record before the commit that holds it has returned, which
// is how "publish only after the Pebble commit" holds by construction.
package journal
