package ingest

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// known is what one stream remembers of each object: its UID and last
// journaled resourceVersion, keyed by record key. It is the whole of
// ingest's memory per object (the entry and its key, ~80 bytes), against
// the 3–9 KB a SharedInformer keeps for a full pod. Its zero value is an
// empty set.
type known struct {
	objs map[string]heldObj
	// odd holds, by key, the identities not in the forms Kubernetes
	// writes (see knownObj): an entry of objs whose rv is oddRV is here.
	odd map[string]oddIdentity
}

// heldObj is a knownObj as the known set holds it: 24 bytes in every
// object's map entry, not 32 (an odd identity is in known.odd).
type heldObj struct {
	uid [16]byte
	rv  uint64
}

// oddRV marks a heldObj whose identity is in known.odd. ParseVersion
// reads it from one string only, which makeKnown holds as odd too.
const oddRV = math.MaxUint64

func (k *known) get(key string) (knownObj, bool) {
	h, ok := k.objs[key]
	switch {
	case !ok:
		return knownObj{}, false
	case h.rv == oddRV:
		o := k.odd[key]
		return knownObj{odd: &o}, true
	}
	return knownObj{uid: h.uid, rv: h.rv}, true
}

func (k *known) put(key string, o knownObj) {
	if k.objs == nil {
		k.objs = map[string]heldObj{}
	}
	if o.odd != nil {
		if k.odd == nil {
			k.odd = map[string]oddIdentity{}
		}
		k.objs[key], k.odd[key] = heldObj{rv: oddRV}, *o.odd
		return
	}
	k.objs[key] = heldObj{uid: o.uid, rv: o.rv}
	if len(k.odd) > 0 {
		delete(k.odd, key)
	}
}

func (k *known) remove(key string) {
	delete(k.objs, key)
	if len(k.odd) > 0 {
		delete(k.odd, key)
	}
}

// newest is the highest resourceVersion the set holds; ok false when one
// is not a number (an odd identity), which nothing can be ordered against.
func (k *known) newest() (n uint64, ok bool) {
	if len(k.odd) > 0 {
		return 0, false
	}
	for _, h := range k.objs {
		n = max(n, h.rv)
	}
	return n, true
}

// armRelease finds, for a stream about to watch from cursor (or just past
// a list ending at it), the newest version on record in its scope: the
// cursor is the newest of the stream's own records (a watch's events come
// in version order, a list's end is newer than all it listed), and the
// known set holds any newer one another writer journaled (the
// controller's read of a pod at restart). Only with Options.Reload.
func (s *stream) armRelease(cursor string) {
	if s.in.opts.Reload == nil || s.letGo || s.armed {
		return
	}
	c, ok := journal.ParseVersion(cursor)
	if !ok {
		return
	}
	n, ok := s.known.newest()
	if !ok {
		return
	}
	s.newest, s.armed = max(c, n), true
}

// passed lets the known set go once the watch has reached a version past
// the newest on record: resourceVersions grow through a watch, so every
// later event is newer than anything journaled and cannot be a duplicate,
// nor the delete of an object already recorded gone. Until the stream
// lists again (reload), it keeps nothing per object.
func (s *stream) passed(rv string) {
	if !s.armed || s.letGo {
		return
	}
	if n, ok := journal.ParseVersion(rv); !ok || n <= s.newest {
		return
	}
	s.known, s.letGo, s.armed = known{}, true, false
	s.heldObjects.Store(0)
	s.in.Stats.Released.Add(1)
}

// reload gives a stream that let its known set go the set back before it
// lists: what the journal knew at the record Options.Reload names, and
// then the records after it.
func (s *stream) reload(ctx context.Context) error {
	if !s.letGo || s.in.opts.Reload == nil {
		return nil
	}
	seq, objs, err := s.in.opts.Reload(ctx)
	if err != nil {
		return fmt.Errorf("ingest: reloading what the journal knows of %s: %w", s.res.Name(), err)
	}
	for key, o := range objs {
		if owner(s.in.streams, key) == s {
			s.known.put(key, makeKnown(o.UID, o.ResourceVersion))
		}
	}
	if err := rebuild(ctx, s.in.opts.Journal, []*stream{s}, seq+1); err != nil {
		s.known = known{}
		return &journalError{err}
	}
	s.letGo = false
	s.heldObjects.Store(int64(len(s.known.objs)))
	s.in.Stats.Reloaded.Add(1)
	return nil
}

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
	if u, ok := journal.ParseUUID(uid); ok {
		if n, ok := journal.ParseVersion(rv); ok && n != oddRV {
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
	u, ok := journal.ParseUUID(uid)
	if !ok || u != o.uid {
		return false
	}
	n, ok := journal.ParseVersion(rv)
	return ok && n == o.rv
}

// UID and RV are the strings o was made from.
func (o knownObj) UID() string {
	if o.odd != nil {
		return o.odd.uid
	}
	return journal.FormatUUID(o.uid)
}

func (o knownObj) RV() string {
	if o.odd != nil {
		return o.odd.rv
	}
	return strconv.FormatUint(o.rv, 10)
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
			s.known.put(key, makeKnown(o.UID, o.ResourceVersion))
		}
	}
	in.seeded = seq
	for _, s := range in.streams {
		s.heldObjects.Store(int64(len(s.known.objs)))
	}
}

// rebuild folds the journal's Observed and Vanished records from record
// from on into the known sets of the streams, routing each record to the
// stream whose scope holds it.
func rebuild(ctx context.Context, j *journal.Journal, streams []*stream, from uint64) error {
	err := j.Read(ctx, from, func(r journal.Record) error {
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
			s.known.remove(r.Key)
			return nil
		}
		var o journal.Observed
		if err := r.Decode(&o); err != nil {
			return fmt.Errorf("ingest: record %d: %w", r.Seq, err)
		}
		if o.Deleted {
			s.known.remove(r.Key)
		} else {
			s.known.put(r.Key, makeKnown(o.UID, o.ResourceVersion))
		}
		return nil
	})
	for _, s := range streams {
		s.heldObjects.Store(int64(len(s.known.objs)))
	}
	return err
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
