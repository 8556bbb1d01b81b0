package ingest

import (
	"context"
	"fmt"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// known is what one stream remembers of each object: its UID and last
// journaled resourceVersion, keyed by record key. It is the whole of
// ingest's memory per object (~150 bytes), against the 3–9 KB a
// SharedInformer keeps for a full pod.
type known map[string]knownObj

type knownObj struct {
	uid string
	rv  string
}

// seen reports whether (uid, rv) of key is already journaled.
func (k known) seen(key, uid, rv string) bool {
	o, ok := k[key]
	return ok && o.uid == uid && o.rv == rv
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
			s.known[key] = knownObj{uid: o.UID, rv: o.ResourceVersion}
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
			s.known[r.Key] = knownObj{uid: o.UID, rv: o.ResourceVersion}
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
