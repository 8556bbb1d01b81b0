package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/tracing"
)

// controllerOptions wire one controller process.
type controllerOptions struct {
	Config     *rest.Config
	JournalDir string
	Namespaces []string
	// ExcludeNamespaces are left out of a cluster-wide watch.
	ExcludeNamespaces []string
	// NATS: an external URL, or an embedded server under JournalDir/nats
	// unless NoNATS.
	NATS   journal.NATSConfig
	NoNATS bool
	// Stream and SubjectPrefix are the outbox's (journal.OutboxOptions):
	// defaults when empty.
	Stream        jetstream.StreamConfig
	SubjectPrefix string
	// QPS and Burst bound the actuator's writes.
	QPS     float32
	Burst   int
	Workers int
	// GCPercent is the GOGC set once caught up (ctl.SteadyGC): 0 for
	// ctl.SteadyGCPercent, unless the environment sets GOGC.
	GCPercent int
	// GCRoom is the least room in bytes the heap gets between
	// collections once caught up (ctl.SteadyGC): 0 for ctl.SteadyGCRoom,
	// below 0 none.
	GCRoom int64
	// AnalysisHosts, when set, are the only hosts analysis checks reach.
	AnalysisHosts []string
	// Debounce gathers bursts of records into one plan: the planner
	// plans once records stop arriving for Quiet, or Debounce after the
	// first at the latest. 0 means 500 µs; below 0, always Debounce.
	Debounce, Quiet time.Duration
	// StreamWait, when positive, holds a plan's actions until the NATS
	// stream holds their intents, for at most that long. A standby
	// continues the stream's history, not the leader's disk: a leader
	// that died having acted on intents it had not yet published would
	// leave actions no history shows. Set with leader election on a
	// shared stream.
	StreamWait time.Duration
	// CrossCheck plans each time with planner.Plan as well and acts on
	// its plan, logging any difference from the incremental planner's.
	CrossCheck bool
	// Checkpoints: how often the folded state is saved and how much
	// journal is kept.
	Checkpoints checkpointOptions
	Logger      *slog.Logger
}

// controller is the run loop: ingest → journal → projections → planner →
// actuator → journal. It is the only place with goroutines and clocks.
type controller struct {
	opts controllerOptions
	j    *journal.Journal
	in   *ingest.Ingester
	act  *actuator.Actuator
	// readClient lists and watches (ingest), and lists a pod whose
	// write was left in doubt by a crash.
	readClient dynamic.Interface
	// auth asks the apiserver who a journal API caller is and what they
	// may do (journalapi.go).
	auth kubernetes.Interface
	log  *slog.Logger
	// streamBehind: the last plan acted before the stream held its
	// intents (awaitStream); the planner's goroutine only.
	streamBehind bool
	nc           *nats.Conn
	ob           *journal.Outbox
	tp           *tracing.TraceParents
	close        []func()

	mu sync.Mutex
	// books is what the controller folds from the journal (and saves as
	// checkpoints); state is books.State, the planner's view.
	books *projections.Books
	state *projections.State
	// inc plans what the records folded since its last plan changed.
	inc *planner.Incremental
	// traceFrom is where the trace loop starts (see traceFrom).
	traceFrom uint64

	folded   atomic.Uint64 // last sequence folded into state
	foldedCh chan struct{} // closed and replaced at each fold
	foldMu   sync.Mutex
	dirty    chan struct{}

	plans       atomic.Int64
	fullPlans   atomic.Int64
	ticks       atomic.Int64
	checkpoints atomic.Int64
	started     atomic.Bool
}

func newController(opts controllerOptions) (*controller, error) {
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	if opts.Quiet == 0 {
		opts.Quiet = 500 * time.Microsecond
	}
	if opts.GCRoom == 0 {
		opts.GCRoom = ctl.SteadyGCRoom
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	j, err := journal.Open(opts.JournalDir, journal.Options{})
	if err != nil {
		return nil, err
	}
	c := &controller{opts: opts, j: j, log: opts.Logger, foldedCh: make(chan struct{}), dirty: make(chan struct{}, 1)}
	c.close = append(c.close, func() { j.Close() })
	if c.books, err = loadCheckpoint(j); err != nil {
		c.shutdown()
		return nil, err
	}
	c.state = c.books.State
	c.state.Track()
	c.inc = planner.NewIncremental()
	c.folded.Store(c.state.Seq)
	cfg := rest.CopyConfig(opts.Config)
	cfg.QPS, cfg.Burst = 200, 400 // list+watch only
	if c.readClient, err = ingest.NewClient(cfg); err != nil {
		c.shutdown()
		return nil, err
	}
	c.auth = kubernetes.NewForConfigOrDie(cfg)
	c.in, err = ingest.New(ingest.Options{
		Client: c.readClient, Journal: j, Namespaces: opts.Namespaces, ExcludeNamespaces: opts.ExcludeNamespaces, Logger: opts.Logger,
		Resources: []ingest.Resource{ingest.Pods, ingest.StatefulSets, ingest.DaemonSets, ingest.ControllerRevisions, ingest.Nodes, ingest.Rollouts},
		Reload:    c.knownNow,
	})
	if err != nil {
		c.shutdown()
		return nil, err
	}
	c.act, err = actuator.New(actuator.Options{Config: opts.Config, Journal: j, QPS: opts.QPS, Burst: opts.Burst, Logger: opts.Logger, AnalysisHosts: opts.AnalysisHosts})
	if err != nil {
		c.shutdown()
		return nil, err
	}
	if !opts.NoNATS {
		ncfg := opts.NATS
		if ncfg.URL == "" {
			// Beside the journal, not in it: Pebble owns its directory.
			srv, err := journal.StartEmbeddedNATS(filepath.Join(filepath.Dir(filepath.Clean(opts.JournalDir)), "nats"))
			if err != nil {
				c.shutdown()
				return nil, err
			}
			c.close = append(c.close, srv.Shutdown)
			ncfg.Embedded = srv
		}
		if c.nc, err = journal.ConnectNATS(ncfg); err != nil {
			c.shutdown()
			return nil, err
		}
		c.close = append(c.close, c.nc.Close)
		// Each published record carries the traceparent of its span; the
		// lookup learns rollout UIDs from the folded state before the
		// outbox resumes (run).
		c.tp = tracing.NewTraceParents()
		if c.ob, err = journal.NewOutbox(j, c.nc, journal.OutboxOptions{Stream: opts.Stream, SubjectPrefix: opts.SubjectPrefix, Logger: opts.Logger, TraceParent: c.tp.Of}); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	return c, nil
}

func (c *controller) shutdown() {
	for i := len(c.close) - 1; i >= 0; i-- {
		c.close[i]()
	}
}

// run runs until ctx ends or a journal failure; then it closes everything.
func (c *controller) run(ctx context.Context) error {
	defer c.shutdown()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Fold what is on record after the checkpoint before planning
	// anything; everything else that needs the past starts from this.
	start := time.Now()
	from := c.state.Seq
	if err := foldFrom(ctx, c.j, c.books); err != nil {
		return err
	}
	c.folded.Store(c.state.Seq)
	c.traceFrom = c.books.TraceFrom()
	c.in.SeedKnown(c.state.Seq, knownFrom(c.state))
	if c.tp != nil {
		for key, r := range c.state.Rollouts {
			c.tp.Learn(key, r.UID)
		}
	}
	c.log.Info("controller: journal folded", "checkpoint", from, "records", c.state.Seq-from, "took", time.Since(start))
	if err := c.abandonDangling(ctx); err != nil {
		return err
	}
	c.started.Store(true)
	var wg sync.WaitGroup
	goFn := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("controller: "+name+" stopped", "err", err)
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	goFn("ingest", c.in.Run)
	if c.ob != nil {
		// The outbox degrades, never stops the controller: it retries every
		// NATS failure itself and returns only when ctx ends or the journal
		// closes.
		goFn("outbox", c.ob.Run)
		if every := c.opts.Checkpoints.ShipEvery; every >= 0 {
			goFn("checkpoint shipping", func(ctx context.Context) error {
				err := c.ob.ShipCheckpoints(ctx, cmp.Or(every, time.Hour))
				if ctx.Err() != nil {
					return nil
				}
				return err
			})
		}
	}
	if exp, err := tracing.NewExporter(ctx); err != nil {
		c.log.Warn("tracing: not exporting", "err", err)
	} else if exp != nil {
		goFn("tracing", func(ctx context.Context) error { return c.traceLoop(ctx, exp) })
	}
	goFn("projections", func(ctx context.Context) error {
		return c.j.Follow(ctx, c.folded.Load()+1, c.fold)
	})
	work := make(chan job, 4096)
	for range c.opts.Workers {
		goFn("actuator", func(ctx context.Context) error { return c.worker(ctx, work) })
	}
	goFn("planner", func(ctx context.Context) error { return c.planLoop(ctx, work) })
	goFn("checkpoints", c.checkpointLoop)
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// rolloutOrigin is the record that first showed rollout's current object
// ("namespace/name"), 0 when the controller holds no such rollout.
func (c *controller) rolloutOrigin(rollout string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.books.Rollouts[rollout].Seq
}

// abandonDangling journals, for every intent a previous process left
// without an outcome, that nobody knows whether it happened: the planner
// then re-derives what is needed from what the watch shows, and every
// action's precondition makes doing it again safe.
func (c *controller) abandonDangling(ctx context.Context) error {
	c.mu.Lock()
	open := slices.SortedFunc(maps.Values(c.books.Open), func(a, b projections.OpenIntent) int { return cmp.Compare(a.Seq, b.Seq) })
	c.mu.Unlock()
	var entries []journal.Entry
	refreshed := map[string]bool{}
	for _, oi := range open {
		k, f := oi.Fact.Key, oi.Fact.ActionFact()
		// The write may have landed without its watch event reaching the
		// journal before the crash: read the pod once (a restart is not
		// the happy path) so the first plan sees what is really there and
		// cannot, say, gate a second pod while the first is already gated.
		if f.Pod != "" && !refreshed[f.Pod] {
			refreshed[f.Pod] = true
			e, err := c.refreshPod(ctx, f.Pod)
			if err != nil {
				return err
			}
			if e != nil {
				entries = append(entries, *e)
			}
		}
		f.Class, f.Error = journal.ClassAbandoned, "the controller stopped before the outcome was known"
		body, err := journal.EncodeBody(f)
		if err != nil {
			return err
		}
		entries = append(entries, journal.Entry{Kind: journal.KindActionFailed, Key: k, Body: body})
	}
	if len(entries) > 0 {
		c.log.Info("controller: abandoning intents of a previous process", "count", len(open))
		_, err := c.j.Append(ctx, nil, entries...)
		return err
	}
	return nil
}

// refreshPod lists one pod by name (list, not get: the controller's RBAC
// grants only list and watch) and returns its Observed entry, nil if gone.
func (c *controller) refreshPod(ctx context.Context, podKey string) (*journal.Entry, error) {
	ns, name, _ := strings.Cut(podKey, "/")
	list, err := c.readClient.Resource(ingest.Pods.GVR).Namespace(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		return nil, fmt.Errorf("controller: refreshing pod %s after a restart: %w", podKey, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	o, err := ingest.Compact(ingest.Pods, &list.Items[0])
	if err != nil {
		return nil, err
	}
	body, err := journal.EncodeBody(&o)
	if err != nil {
		return nil, err
	}
	return &journal.Entry{Kind: journal.KindObserved, Key: ingest.Key("pods", ns, name), Body: body}, nil
}

// knownNow is what the journal knew at the last record folded, by record
// key: what a stream of ingest that let its known set go takes back before
// it lists again (ingest.Options.Reload), as it took it from the
// checkpoint's state at start.
func (c *controller) knownNow(context.Context) (uint64, map[string]ingest.KnownObject, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.books.State.Seq, knownFrom(c.books.State), nil
}

// fold applies one record to the state and wakes the planner, unless the
// record is the planner's own (a Tick it appended to plan, the intents of
// a plan it made, which it waits for): waking on those would make an idle
// controller tick forever once a plan takes longer than tickEvery.
func (c *controller) fold(r journal.Record) error {
	c.mu.Lock()
	err := c.books.Apply(r)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.folded.Store(r.Seq)
	c.foldMu.Lock()
	close(c.foldedCh)
	c.foldedCh = make(chan struct{})
	c.foldMu.Unlock()
	if r.Kind == journal.KindTick || r.Kind == journal.KindActionIntended || r.Kind == journal.KindCursor {
		return nil
	}
	select {
	case c.dirty <- struct{}{}:
	default:
	}
	return nil
}

// waitFolded waits until the state includes record seq.
func (c *controller) waitFolded(ctx context.Context, seq uint64) error {
	for {
		c.foldMu.Lock()
		ch := c.foldedCh
		c.foldMu.Unlock()
		if c.folded.Load() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

type job struct {
	act    planner.Action
	intent journal.ActionFact
}

func (c *controller) worker(ctx context.Context, work <-chan job) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case jb := <-work:
			if _, err := c.act.Execute(ctx, jb.act, jb.intent); errors.Is(err, actuator.ErrJournal) {
				return err
			}
		}
	}
}

// awaitStream waits, up to StreamWait, until the stream holds record seq,
// a plan's last intent. NATS down or slow makes every plan wait that long
// and then act anyway: the controller degrades, it does not stop, and says
// so once per outage.
func (c *controller) awaitStream(ctx context.Context, seq uint64) {
	wctx, cancel := context.WithTimeout(ctx, c.opts.StreamWait)
	defer cancel()
	err := c.ob.WaitPublished(wctx, seq)
	switch {
	case err != nil && ctx.Err() == nil && !c.streamBehind:
		c.streamBehind = true
		c.log.Warn("controller: acting on intents the stream does not hold yet; a standby taking over now would not see them",
			"seq", seq, "published", c.ob.Published(), "waited", c.opts.StreamWait)
	case err == nil && c.streamBehind:
		c.streamBehind = false
		c.log.Info("controller: the stream holds each plan's intents before it is acted on again", "seq", seq)
	}
}

// gather waits for a burst of records to end before a plan: until none
// has come for Quiet, or Debounce has passed. A watch delivers a burst
// (one ingest commit's worth) every few milliseconds on a busy fleet;
// waiting out the whole Debounce after each first record put 20 ms into
// every step of a pod's cycle (BENCHMARKS §3). It reports false once ctx
// is done.
func (c *controller) gather(ctx context.Context) bool {
	end := time.NewTimer(c.opts.Debounce)
	defer end.Stop()
	var quiet <-chan time.Time
	var qt *time.Timer
	if c.opts.Quiet > 0 && c.opts.Quiet < c.opts.Debounce {
		qt = time.NewTimer(c.opts.Quiet)
		defer qt.Stop()
		quiet = qt.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-end.C:
			return true
		case <-quiet:
			return true
		case <-c.dirty:
			if qt != nil {
				qt.Reset(c.opts.Quiet)
			}
		}
	}
}

// tickEvery bounds how stale the planner's clock may be when it plans.
const tickEvery = 100 * time.Millisecond

// planLoop plans whenever records arrive (debounced) or a wake-up is due.
// Time reaches the planner only as journaled Tick records, so replay sees
// the same "now"; all of a plan's intents are journaled before any runs.
func (c *controller) planLoop(ctx context.Context, work chan<- job) error {
	if err := c.in.WaitSynced(ctx); err != nil {
		return nil
	}
	gogc, restore := ctl.SteadyGC(c.opts.GCPercent, c.opts.GCRoom)
	defer restore()
	c.log.Info("rollbook: caught up with the cluster; from now on the fleet's state is most of the heap", "gogc", gogc, "gcRoomBytes", max(c.opts.GCRoom, 0))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.dirty:
		case <-timer.C:
		}
		if !c.gather(ctx) {
			return nil
		}
		c.mu.Lock()
		last := c.state.Now
		c.mu.Unlock()
		if now := time.Now(); now.UnixNano()-last >= int64(tickEvery) {
			recs, err := c.j.Append(ctx, nil, journal.Entry{Kind: journal.KindTick, Key: "tick", Body: mustBody(journal.TickFact{Reason: "plan"})})
			if err != nil {
				return err
			}
			c.ticks.Add(1)
			if err := c.waitFolded(ctx, recs[0].Seq); err != nil {
				return nil
			}
		}
		c.mu.Lock()
		planStart := time.Now()
		res := c.inc.Plan(c.state, c.state.TakeTouched())
		planSeconds.Observe(time.Since(planStart).Seconds())
		if c.opts.CrossCheck {
			full := planner.Plan(c.state)
			if d := planner.Difference(res, full); d != "" {
				c.log.Error("planner: the incremental plan differs from Plan; acting on Plan's", "seq", c.state.Seq, "full", c.inc.Full, "partial", c.inc.Partial, "fromLast", c.inc.FromLast, "difference", d)
				res = full
			}
		}
		c.fullPlans.Store(int64(c.inc.Full))
		seq := c.state.Seq
		c.mu.Unlock()
		c.plans.Add(1)
		if len(res.Actions) > 0 {
			facts, last, err := c.act.Intend(ctx, res.Actions, seq)
			if err != nil {
				return err
			}
			// The next plan must see these intents, or it would derive
			// the same actions again.
			if err := c.waitFolded(ctx, last); err != nil {
				return nil
			}
			if c.ob != nil && c.opts.StreamWait > 0 {
				c.awaitStream(ctx, last)
			}
			for i, a := range res.Actions {
				select {
				case work <- job{act: a, intent: facts[i]}:
				case <-ctx.Done():
					return nil
				}
			}
		}
		wait := 30 * time.Second // a heartbeat plan even when idle
		if res.WakeAt != 0 {
			wait = min(wait, max(time.Until(time.Unix(0, res.WakeAt)), 0))
		}
		timer.Reset(wait)
	}
}

func mustBody(v any) []byte {
	b, err := journal.EncodeBody(v)
	if err != nil {
		panic(err) // static types that always encode
	}
	return b
}

// snapshot returns a summary of the state for status output and metrics.
func (c *controller) snapshot() (rollouts map[string]projections.RolloutStatus, pods, gated int, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rollouts = map[string]projections.RolloutStatus{}
	for k, r := range c.state.Rollouts {
		rollouts[k] = r.Status
	}
	for _, p := range c.state.Pods {
		pods++
		if p.Pod == nil {
			continue
		}
		for _, cd := range p.Pod.Conditions {
			if cd.Type() == planner.GateCondition && cd.Status() == "False" {
				gated++
			}
		}
	}
	return rollouts, pods, gated, c.state.Seq
}
