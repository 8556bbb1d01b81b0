package ingest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// known is what one stream remembers of each object: its UID and last
// journaled resourceVersion, keyed by record key. It is the whole of
// ingest's memory per object (the entry and its key, ~90 bytes), against
// the 3–9 KB a SharedInformer keeps for a full pod.
type known map[string]knownObj

// knownObj is an object's UID and resourceVersion. Kubernetes writes a UID
// as a UUID and a resourceVersion as a decimal number: held as 16 bytes
// and a uint64, they take no heap of their own, where the two strings of
// the event they came from held 64 bytes for every object (48 and 16,
// kept as long as the object is). Any other form, which the API does not
// rule out, is held as it is, in odd.
type knownObj struct {
	uid [16]byte
	rv  uint64
	odd *oddIdentity
}

type oddIdentity struct{ uid, rv string }

func makeKnown(uid, rv string) knownObj {
	if u, ok := parseUUID(uid); ok {
		if n, ok := parseVersion(rv); ok {
			return knownObj{uid: u, rv: n}
		}
	}
	return knownObj{odd: &oddIdentity{uid, rv}}
}

// is reports whether o is (uid, rv), without making o's strings: ingest
// asks it of every event.
func (o knownObj) is(uid, rv string) bool {
	if o.odd != nil {
		return o.odd.uid == uid && o.odd.rv == rv
	}
	u, ok := parseUUID(uid)
	if !ok || u != o.uid {
		return false
	}
	n, ok := parseVersion(rv)
	return ok && n == o.rv
}

// UID and RV are the strings o was made from.
func (o knownObj) UID() string {
	if o.odd != nil {
		return o.odd.uid
	}
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, x := range o.uid {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[x>>4], digits[x&15])
	}
	return string(b)
}

func (o knownObj) RV() string {
	if o.odd != nil {
		return o.odd.rv
	}
	return strconv.FormatUint(o.rv, 10)
}

// parseUUID reads a UUID as the apiserver writes one (lower-case hex,
// 8-4-4-4-12): ok only when UID() gives s back.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi > 15 || lo > 15 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}

// parseVersion reads a decimal resourceVersion: ok only when RV() gives s
// back (no sign, no leading zero, within a uint64).
func parseVersion(s string) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// KnownObject is what ingest remembers of an object it journaled.
type KnownObject struct {
	UID, ResourceVersion string
}

// SeedKnown gives the ingester what the journal knew at record seq, by
// record key (Key), from a checkpoint: Run then reads only the records
// after seq instead of the whole journal. Call it before Run.
//
// Every object in objs must have been journaled with that UID and
// resourceVersion, or later changes to it could be taken for duplicates;
// an object missing from objs is merely journaled again.
func (in *Ingester) SeedKnown(seq uint64, objs map[string]KnownObject) {
	for key, o := range objs {
		if s := owner(in.streams, key); s != nil {
			s.known[key] = makeKnown(o.UID, o.ResourceVersion)
		}
	}
	in.seeded = seq
}

// rebuild folds the journal's Observed and Vanished records from record
// from on into the known sets of the streams, routing each record to the
// stream whose scope holds it.
func rebuild(ctx context.Context, j *journal.Journal, streams []*stream, from uint64) error {
	return j.Read(ctx, from, func(r journal.Record) error {
		switch r.Kind {
		case journal.KindObserved, journal.KindVanished:
		default:
			return nil
		}
		s := owner(streams, r.Key)
		if s == nil {
			return nil
		}
		if r.Kind == journal.KindVanished {
			delete(s.known, r.Key)
			return nil
		}
		var o journal.Observed
		if err := r.Decode(&o); err != nil {
			return fmt.Errorf("ingest: record %d: %w", r.Seq, err)
		}
		if o.Deleted {
			delete(s.known, r.Key)
		} else {
			s.known[r.Key] = makeKnown(o.UID, o.ResourceVersion)
		}
		return nil
	})
}

// owner returns the stream whose scope contains key.
func owner(streams []*stream, key string) *stream {
	for _, s := range streams {
		if strings.HasPrefix(key, s.keyPrefix()) {
			return s
		}
	}
	return nil
}
