package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/journal"
)

// ListMode says how a stream (re)builds its view when it has no usable cursor.
type ListMode int

const (
	// ListAuto streams the list through the watch (WatchList) and falls
	// back to a paginated list when the server refuses it.
	ListAuto ListMode = iota
	// ListStreaming always uses WatchList.
	ListStreaming
	// ListPaginated always uses a paginated list.
	ListPaginated
)

// Options configure an Ingester.
type Options struct {
	Client  dynamic.Interface
	Journal *journal.Journal
	// Resources to list and watch.
	Resources []Resource
	// Namespaces limits namespaced resources to these namespaces; empty
	// means cluster-wide. Cluster-scoped resources ignore it.
	Namespaces []string
	// ExcludeNamespaces are left out of a cluster-wide watch by a field
	// selector, so the server never sends their objects (kube-system's
	// pods are not the controller's business, and their churn costs).
	// Naming a namespace in both Namespaces and ExcludeNamespaces is an
	// error.
	ExcludeNamespaces []string
	// BatchSize caps the events gathered into one journal append (default 512).
	BatchSize int
	// PageSize is the paginated list's page (default 500).
	PageSize int64
	ListMode ListMode
	Logger   *slog.Logger
	// Reload gives a stream its known set back when it must list again
	// (no cursor, or the server answered 410 Gone) after it let the set
	// go: what the journal knew at record seq, by record key, as
	// SeedKnown takes it; the stream reads the records after seq itself.
	//
	// With Reload set, a stream lets its known set go once its watch has
	// passed the newest version on record in its scope: every event after
	// that is newer than anything journaled, so there is no duplicate to
	// tell apart, and the set (~85 bytes an object) is memory held for
	// nothing between lists (BENCHMARKS.md §1). Without it, the set is
	// held for the ingester's life.
	Reload func(ctx context.Context) (seq uint64, objs map[string]KnownObject, err error)
}

// Stats counts what the ingester did, for tests, metrics and benchmarks.
type Stats struct {
	Relists        atomic.Int64 // full lists (streaming or paginated)
	Watches        atomic.Int64 // watch connections opened
	Records        atomic.Int64 // records appended
	Duplicates     atomic.Int64 // events dropped as already journaled
	Vanished       atomic.Int64 // Vanished records emitted
	Gone           atomic.Int64 // 410 Gone answers
	StreamFallback atomic.Int64 // WatchList refused, paginated list used
	Released       atomic.Int64 // known sets let go (Options.Reload)
	Reloaded       atomic.Int64 // known sets given back for a list (Options.Reload)
}

// Ingester lists and watches resources and journals compact records.
type Ingester struct {
	opts    Options
	streams []*stream
	Stats   Stats
	synced  sync.WaitGroup
	// seeded is the record the known sets were seeded at (SeedKnown):
	// Run folds only the records after it.
	seeded uint64
}

// New validates opts and prepares one stream per resource and scope.
func New(opts Options) (*Ingester, error) {
	if opts.Client == nil || opts.Journal == nil {
		return nil, errors.New("ingest: Client and Journal are required")
	}
	if len(opts.Resources) == 0 {
		return nil, errors.New("ingest: no resources to watch")
	}
	if opts.BatchSize < 0 || opts.PageSize < 0 {
		return nil, fmt.Errorf("ingest: negative BatchSize %d or PageSize %d", opts.BatchSize, opts.PageSize)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 512
	}
	if opts.PageSize == 0 {
		opts.PageSize = 500
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	exclude, err := excludeSelector(opts.Namespaces, opts.ExcludeNamespaces)
	if err != nil {
		return nil, err
	}
	in := &Ingester{opts: opts}
	for _, r := range opts.Resources {
		scopes := []string{""}
		if r.Namespaced && len(opts.Namespaces) > 0 {
			scopes = opts.Namespaces
		}
		for _, ns := range scopes {
			s := &stream{in: in, res: r, ns: ns, known: known{}}
			if r.Namespaced && ns == "" {
				s.fieldSelector = exclude
			}
			in.streams = append(in.streams, s)
		}
	}
	in.synced.Add(len(in.streams))
	return in, nil
}

// Run rebuilds what the journal knows, then runs every stream until ctx
// ends. It returns only ctx's error or a journal failure (a watch failure
// is retried with backoff, never returned).
func (in *Ingester) Run(ctx context.Context) error {
	if err := rebuild(ctx, in.opts.Journal, in.streams, in.seeded+1); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(in.streams))
	for _, s := range in.streams {
		go func() { errs <- s.run(ctx) }()
	}
	var first error
	for range in.streams {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// WaitSynced blocks until every stream has a complete view (a resumed
// watch or a finished list) or ctx ends.
func (in *Ingester) WaitSynced(ctx context.Context) error {
	done := make(chan struct{})
	go func() { in.synced.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Held is, by resource, the number of objects the streams' known sets hold
// now, as of their last append: 0 for a stream that let its set go
// (Options.Reload). Safe while Run runs.
func (in *Ingester) Held() map[string]int64 {
	out := make(map[string]int64, len(in.opts.Resources))
	for _, s := range in.streams {
		out[s.res.Name()] += s.heldObjects.Load()
	}
	return out
}

// excludeSelector is the field selector that leaves the excluded
// namespaces out of a cluster-wide watch ("" when none are).
func excludeSelector(namespaces, exclude []string) (string, error) {
	var sels []fields.Selector
	for _, ns := range exclude {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return "", fmt.Errorf("ingest: excluded namespace %q: %s", ns, errs[0])
		}
		if slices.Contains(namespaces, ns) {
			return "", fmt.Errorf("ingest: namespace %s is both watched and excluded", ns)
		}
		sels = append(sels, fields.OneTermNotEqualSelector("metadata.namespace", ns))
	}
	if len(sels) == 0 {
		return "", nil
	}
	return fields.AndSelectors(sels...).String(), nil
}
