package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/journal"
)

// initialEventsEnd is the bookmark annotation that ends a streaming list.
const initialEventsEnd = "k8s.io/initial-events-end"

// errGone means the cursor fell out of the server's history: relist.
var errGone = errors.New("ingest: resource version too old (410 Gone)")

// errStreamingRefused means the server does not do WatchList.
var errStreamingRefused = errors.New("ingest: server refused a streaming list")

// stream is one resource in one scope: one watch, one cursor, one known set.
type stream struct {
	in  *Ingester
	res Resource
	ns  string
	// fieldSelector leaves excluded namespaces out of a cluster-wide
	// stream; every list and watch of the stream carries it, so its
	// known set never holds their objects.
	fieldSelector string
	known         known
	// staged holds known-set changes of entries not yet appended.
	staged     map[string]staged
	syncedOnce sync.Once
	noStream   bool // the server refused WatchList once: stop asking
	probed     bool // the cursor was found valid once (see probe)
	// letGo: with Options.Reload, the stream let its known set go once
	// its watch passed newest (passed), and takes it back before it lists
	// again (reload); until then known is empty and stays so.
	letGo bool
	// newest bounds every version the journal holds in the stream's scope
	// (armRelease); armed: it is found, and a watch past it releases.
	newest uint64
	armed  bool
	// heldObjects is len(known.objs) as of the last append, for Held.
	heldObjects atomic.Int64
	// health and lag are read by Ingester.Health and Ingester.Lag from
	// other goroutines.
	health streamHealth
	lag    lagCounts
}

func (s *stream) keyPrefix() string {
	if s.res.Namespaced && s.ns != "" {
		return s.res.Name() + "/" + s.ns + "/"
	}
	return s.res.Name() + "/"
}

func (s *stream) client() dynamic.ResourceInterface {
	ri := s.in.opts.Client.Resource(s.res.GVR)
	if s.res.Namespaced && s.ns != "" {
		return ri.Namespace(s.ns)
	}
	return ri
}

func (s *stream) markSynced() {
	s.syncedOnce.Do(func() {
		s.health.synced.Store(true)
		s.in.synced.Done()
	})
}

// run resumes from the journaled cursor when there is one and relists only
// when there is none or the server answers 410 Gone. Failures back off like
// client-go's Reflector (800 ms doubling to 30 s, jittered), reset once a
// watch has been healthy.
func (s *stream) run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 800 * time.Millisecond
	bo.MaxInterval = 30 * time.Second
	bo.RandomizationFactor = 0.5
	bo.MaxElapsedTime = 0
	bo.Reset()
	log := s.in.opts.Logger.With("resource", s.res.Name(), "namespace", s.ns)
	name := cursorName(s.res, s.ns)
	for ctx.Err() == nil {
		rv, ok, err := s.in.opts.Journal.Cursor(name)
		if err != nil {
			return err
		}
		var healthy bool
		if !ok || rv == "" {
			err = s.list(ctx)
			if errors.Is(err, errStreamingRefused) {
				continue // retry at once, paginated
			}
		} else if err = s.probe(ctx, rv); err == nil {
			healthy, err = s.watch(ctx, rv, false)
		}
		switch {
		case err == nil:
			bo.Reset()
			continue
		case errors.Is(err, errGone):
			s.in.Stats.Gone.Add(1)
			log.Info("cursor expired, relisting", "resourceVersion", rv)
			if err := s.forgetCursor(ctx); err != nil {
				return err
			}
			continue
		case ctx.Err() != nil:
			return nil
		case isJournalError(err):
			return err
		}
		if healthy {
			bo.Reset()
		}
		s.health.failed(time.Now(), err)
		wait := bo.NextBackOff()
		log.Warn("watch failed, backing off", "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

// probe checks, once per process, that the journaled cursor is still in
// the server's history, with a one-item exact read at that version. A watch
// from an expired version fails only with its first event, which may be
// long in coming; without the probe the stream would call itself synced on
// a view that is missing every delete made while it was down.
func (s *stream) probe(ctx context.Context, rv string) error {
	if s.probed {
		return nil
	}
	_, err := s.client().List(ctx, metav1.ListOptions{Limit: 1, ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchExact, FieldSelector: s.fieldSelector})
	switch {
	case err == nil:
		s.probed = true
		return nil
	case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
		return errGone
	default:
		return fmt.Errorf("ingest: probing cursor %s of %s: %w", rv, s.res.Name(), err)
	}
}

// forgetCursor clears the cursor so the next round relists; clearing it in
// the journal (not just in memory) means a crash before the relist finishes
// also relists.
func (s *stream) forgetCursor(ctx context.Context) error {
	_, err := s.in.opts.Journal.Append(ctx, []journal.Cursor{{Name: cursorName(s.res, s.ns), Value: ""}})
	return err
}

// list rebuilds the view: streaming when the server allows, else paginated.
func (s *stream) list(ctx context.Context) error {
	if err := s.reload(ctx); err != nil {
		return err
	}
	s.armed = false // what is newest on record is found again at the list's end
	s.in.Stats.Relists.Add(1)
	mode := s.in.opts.ListMode
	if mode == ListPaginated || (mode == ListAuto && s.noStream) {
		return s.paginatedList(ctx)
	}
	_, err := s.watch(ctx, "", true)
	if errors.Is(err, errStreamingRefused) && mode == ListAuto {
		s.noStream = true
		s.in.Stats.StreamFallback.Add(1)
		s.in.Stats.Relists.Add(-1) // counted again by the paginated retry
	}
	return err
}

// watch runs one watch connection. With initial set it is a streaming list
// (sendInitialEvents): objects arrive as ADDED until the initial-events-end
// bookmark, where objects known but not seen are journaled as Vanished.
// It reports whether the connection was healthy (delivered events), so the
// caller can reset its backoff.
func (s *stream) watch(ctx context.Context, rv string, initial bool) (healthy bool, err error) {
	timeout := int64(300 + rand.IntN(300)) // spread reconnects, like the Reflector
	opts := metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout, FieldSelector: s.fieldSelector}
	if initial {
		yes := true
		opts.SendInitialEvents = &yes
		opts.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
	}
	clear(s.staged) // what a failed round built was never appended
	s.in.Stats.Watches.Add(1)
	w, err := s.client().Watch(ctx, opts)
	if err != nil {
		if initial && (apierrors.IsBadRequest(err) || apierrors.IsInvalid(err)) {
			return false, fmt.Errorf("%w: %v", errStreamingRefused, err)
		}
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return false, errGone
		}
		return false, fmt.Errorf("ingest: watch %s: %w", s.res.Name(), err)
	}
	defer w.Stop()
	s.health.connected()
	if !initial {
		s.markSynced()
		s.armRelease(rv)
	}
	var seen map[string]struct{}
	if initial {
		seen = map[string]struct{}{}
	}
	cursor := cursorName(s.res, s.ns)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the buffering goroutine with this watch
	events := buffered(wctx, w.ResultChan(), 4*s.in.opts.BatchSize)
	batch := make([]arrival, 0, s.in.opts.BatchSize)
	var journaled []time.Time // arrival of each event in entries
	for {
		batch, journaled = batch[:0], journaled[:0]
		select {
		case <-ctx.Done():
			return healthy, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return healthy, nil // server timeout: resume from the cursor
			}
			batch = append(batch, ev)
		}
		// Gather what is already waiting into the same append: one fsync
		// covers the lot.
	drain:
		for len(batch) < cap(batch) {
			select {
			case ev, ok := <-events:
				if !ok {
					break drain
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		healthy = true
		var entries []journal.Entry
		var cursors []journal.Cursor
		var endOfList bool
		for _, a := range batch {
			ev := a.ev
			switch ev.Type {
			case watch.Error:
				if len(entries) > 0 || len(cursors) > 0 {
					if err := s.append(ctx, cursors, entries); err != nil {
						return healthy, err
					}
				}
				status := apierrors.FromObject(ev.Object)
				if apierrors.IsResourceExpired(status) || apierrors.IsGone(status) {
					return healthy, errGone
				}
				if initial && (apierrors.IsBadRequest(status) || apierrors.IsInvalid(status)) {
					return healthy, fmt.Errorf("%w: %v", errStreamingRefused, status)
				}
				return healthy, fmt.Errorf("ingest: watch %s: %w", s.res.Name(), status)
			case watch.Bookmark:
				u, ok := ev.Object.(metav1.Object)
				if !ok {
					continue
				}
				if initial && u.GetAnnotations()[initialEventsEnd] == "true" {
					entries = append(entries, s.vanished(seen, u.GetResourceVersion())...)
					entries = append(entries, cursorEntry(cursor, u.GetResourceVersion()))
					initial, seen, endOfList = false, nil, true
				}
				if !initial {
					cursors = []journal.Cursor{{Name: cursor, Value: u.GetResourceVersion()}}
				}
			case watch.Added, watch.Modified, watch.Deleted:
				var u metav1.Object
				var e journal.Entry
				var ok bool
				var err error
				switch obj := ev.Object.(type) {
				case *unstructured.Unstructured:
					u = obj
					e, ok, err = s.observe(obj, ev.Type == watch.Deleted)
				case *watchedPod:
					u = obj
					e, ok, err = s.observeWatched(obj, ev.Type == watch.Deleted)
				default:
					return healthy, fmt.Errorf("ingest: watch %s: unexpected object %T", s.res.Name(), ev.Object)
				}
				if err != nil {
					return healthy, err
				}
				if seen != nil {
					seen[Key(s.res.Name(), u.GetNamespace(), u.GetName())] = struct{}{}
				}
				if ok {
					entries = append(entries, e)
					journaled = append(journaled, a.at)
				}
				// NB: during a streaming list the objects' versions are
				// not a position in history; only the end bookmark is.
				if !initial {
					cursors = []journal.Cursor{{Name: cursor, Value: u.GetResourceVersion()}}
				}
			}
		}
		if len(entries) > 0 || len(cursors) > 0 {
			if err := s.append(ctx, cursors, entries); err != nil {
				return healthy, err
			}
			s.lag.observe(time.Now(), journaled)
		}
		if endOfList {
			s.markSynced()
			s.armRelease(cursors[0].Value)
		}
		if len(cursors) > 0 {
			s.passed(cursors[0].Value)
		}
	}
}

// buffered reads a watch's events into a buffer of n from its own
// goroutine. NB: client-go's result channel is unbuffered, so without this
// the loop below, blocked in an fsync, finds no second event waiting when
// it comes back: one event per commit, and the journal falls seconds
// behind the watch on a busy fleet. With it, whatever arrived during the
// last fsync goes into the next one.
// Each event carries its arrival time, the start of its ingest lag.
func buffered(ctx context.Context, in <-chan watch.Event, n int) <-chan arrival {
	out := make(chan arrival, n)
	go func() {
		defer close(out)
		for ev := range in {
			select {
			case out <- arrival{ev: ev, at: time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// observe turns an object into an Observed entry unless (uid,
// resourceVersion) is already journaled, and updates the known set.
func (s *stream) observe(u *unstructured.Unstructured, deleted bool) (journal.Entry, bool, error) {
	return s.observeObject(u, deleted, func() (journal.Observed, error) { return Compact(s.res, u) })
}

// observeWatched is observe for a pod a watch delivered typed.
func (s *stream) observeWatched(p *watchedPod, deleted bool) (journal.Entry, bool, error) {
	if s.res.Name() != Pods.Name() {
		return journal.Entry{}, false, fmt.Errorf("ingest: watch %s: served a pod", s.res.Name())
	}
	return s.observeObject(p, deleted, func() (journal.Observed, error) { return compactWatched(p), nil })
}

// observeObject is observe for an object in either form; compact makes
// its record, only when it is not yet journaled.
func (s *stream) observeObject(u metav1.Object, deleted bool, compact func() (journal.Observed, error)) (journal.Entry, bool, error) {
	key := Key(s.res.Name(), u.GetNamespace(), u.GetName())
	uid, rv := string(u.GetUID()), u.GetResourceVersion()
	if o, ok := s.lookup(key); !deleted && ok && o.is(uid, rv) {
		s.in.Stats.Duplicates.Add(1)
		return journal.Entry{}, false, nil
	}
	if deleted && !s.mayBeLive(key) {
		// Already journaled as deleted or vanished.
		s.in.Stats.Duplicates.Add(1)
		return journal.Entry{}, false, nil
	}
	o, err := compact()
	o.Deleted = deleted
	var body []byte
	if err == nil {
		body, err = journal.EncodeBody(&o)
	}
	if err != nil {
		// A hostile or runaway object (a label map of a million entries,
		// a field that does not convert) must not stop ingest, nor poison
		// the journal: keep its identity and say what was dropped.
		body, err = journal.EncodeBody(truncate(o, err))
	}
	if err != nil {
		return journal.Entry{}, false, fmt.Errorf("ingest: %w", err)
	}
	s.stage(key, makeKnown(uid, rv), deleted)
	return journal.Entry{Kind: journal.KindObserved, Key: key, Body: body}, true, nil
}

// stage records what the known set becomes once the entries being built
// are appended. Invariant: the known set holds only what the journal
// holds, so an object whose record failed to append (an error later in
// the batch, a List failing between pages) is journaled when it is seen
// again, never skipped as a duplicate.
func (s *stream) stage(key string, o knownObj, deleted bool) {
	if s.staged == nil {
		s.staged = map[string]staged{}
	}
	s.staged[key] = staged{obj: o, deleted: deleted}
}

type staged struct {
	obj     knownObj
	deleted bool
}

// lookup is the known set with the staged changes laid over it.
func (s *stream) lookup(key string) (knownObj, bool) {
	if st, ok := s.staged[key]; ok {
		return st.obj, !st.deleted
	}
	return s.known.get(key)
}

// mayBeLive says whether key may be a live object on record: a stream that
// let its known set go cannot tell, and its watch is past anything on
// record anyway (see passed).
func (s *stream) mayBeLive(key string) bool {
	if st, ok := s.staged[key]; ok {
		return !st.deleted
	}
	if s.letGo {
		return true
	}
	_, ok := s.known.get(key)
	return ok
}

// vanished journals every known object a complete list did not contain:
// deletes that happened while no watch was looking are never delivered.
func (s *stream) vanished(seen map[string]struct{}, listRV string) []journal.Entry {
	var keys []string
	for k := range s.known.objs {
		if _, ok := seen[k]; !ok {
			if _, still := s.lookup(k); still {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys) // deterministic journal order
	var out []journal.Entry
	for _, k := range keys {
		o, _ := s.lookup(k)
		ns, name := splitKey(s.res, k)
		body, err := journal.EncodeBody(&journal.Vanished{
			Resource: s.res.Name(), Namespace: ns, Name: name, UID: o.UID(),
			LastResourceVersion: o.RV(), ListResourceVersion: listRV,
		})
		if err != nil {
			continue // a struct of strings always encodes
		}
		s.stage(k, o, true)
		s.in.Stats.Vanished.Add(1)
		out = append(out, journal.Entry{Kind: journal.KindVanished, Key: k, Body: body})
	}
	return out
}

func cursorEntry(name, rv string) journal.Entry {
	body, _ := journal.EncodeBody(&journal.CursorFact{Name: name, ResourceVersion: rv})
	return journal.Entry{Kind: journal.KindCursor, Key: name, Body: body}
}

// append journals entries with cursors, then makes what they record known.
func (s *stream) append(ctx context.Context, cursors []journal.Cursor, entries []journal.Entry) error {
	if _, err := s.in.opts.Journal.Append(ctx, cursors, entries...); err != nil {
		clear(s.staged)
		return &journalError{err}
	}
	if !s.letGo {
		for k, st := range s.staged {
			if st.deleted {
				s.known.remove(k)
			} else {
				s.known.put(k, st.obj)
			}
		}
		s.heldObjects.Store(int64(len(s.known.objs)))
	}
	clear(s.staged)
	s.in.Stats.Records.Add(int64(len(entries)))
	return nil
}

// journalError marks failures of the journal itself: they end Run instead
// of being retried as if the apiserver had failed.
type journalError struct{ err error }

func (e *journalError) Error() string { return e.err.Error() }
func (e *journalError) Unwrap() error { return e.err }

func isJournalError(err error) bool {
	var je *journalError
	return errors.As(err, &je)
}
