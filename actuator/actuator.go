package actuator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
)

// RolloutsGVR is the InPlaceRollout resource whose status subresource the
// Status action writes.
var RolloutsGVR = schema.GroupVersionResource{Group: "rollbook.dev", Version: "v1alpha1", Resource: "inplacerollouts"}

// Defaults of Options.
const (
	DefaultFieldManager = "rollbook"
	DefaultQPS          = 50
	DefaultBurst        = 100
)

// ErrJournal marks a Do whose intent or outcome could not be journaled. It
// is the one error the caller's loop must act on (stop, or retry the
// journal): every other failure is already a journaled fact the planner
// will see.
var ErrJournal = errors.New("actuator: journal append failed")

// Options configure New.
type Options struct {
	// Config reaches the apiserver. It is copied; QPS and Burst below
	// replace its own, and its RateLimiter is dropped so they apply.
	Config *rest.Config
	// QPS and Burst bound the actuator's writes (client-side token
	// bucket): 0 means DefaultQPS/DefaultBurst, negative is an error.
	QPS   float32
	Burst int
	// Journal receives ActionIntended before every API call and
	// ActionSucceeded/ActionFailed after it.
	Journal *journal.Journal
	// FieldManager names Rollbook in managedFields (default "rollbook").
	FieldManager string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// AnalysisHosts, when not empty, are the only hosts analysis checks
	// may reach: a host name or IP (any port) or host:port. Link-local
	// addresses are refused either way (see egress.go).
	AnalysisHosts []string
	// Clock stamps lastTransitionTime of the conditions the actuator
	// writes and the times of Events; nil means time.Now. It is used for
	// nothing else: the actuator decides nothing by time.
	Clock func() time.Time
}

func (o Options) validate() error {
	if o.Config == nil {
		return errors.New("actuator: Options.Config is required")
	}
	if o.Journal == nil {
		return errors.New("actuator: Options.Journal is required")
	}
	if o.QPS < 0 || o.Burst < 0 {
		return fmt.Errorf("actuator: Options.QPS %v and Burst %d must be > 0 (or 0 for the defaults)", o.QPS, o.Burst)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.QPS == 0 {
		o.QPS = DefaultQPS
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if o.FieldManager == "" {
		o.FieldManager = DefaultFieldManager
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// Actuator carries out planner actions against the apiserver, journaling
// each intent before the call and each outcome after it. It is safe for
// concurrent use; it keeps no state about objects (see the package doc for
// the zero-reads invariant).
type Actuator struct {
	opts    Options
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	journal *journal.Journal
	log     *slog.Logger
	m       *metrics
	// http makes analysis measurements (Prometheus, web checks).
	http *http.Client
}

// New validates opts and builds the clients. It makes no request.
func New(opts Options) (*Actuator, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	m := newMetrics()
	cfg := rest.CopyConfig(opts.Config)
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	// NB: a config's own RateLimiter wins over QPS/Burst in client-go.
	cfg.RateLimiter = nil
	if cfg.UserAgent == "" {
		cfg.UserAgent = "rollbook-actuator"
	}
	// Counted at the transport, so each of client-go's own retries counts,
	// and a read, were one ever added, would show.
	cfg.Wrap(m.wrap)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("actuator: kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("actuator: dynamic client: %w", err)
	}
	return &Actuator{opts: opts, kube: kube, dyn: dyn, journal: opts.Journal, log: opts.Logger, m: m, http: newMeasureClient(opts.AnalysisHosts)}, nil
}

// Do carries out one action:
//
//  1. append ActionIntended (the action's key, identity, plan sequence,
//     attempt and the encoded action) and wait until it is durable;
//  2. make exactly one API write, with the action's precondition;
//  3. append ActionSucceeded (with the resourceVersion the write returned)
//     or ActionFailed (with the error and its Class).
//
// It returns the outcome fact. err is nil on success; otherwise it wraps
// the API error (the failure is journaled: nothing to do but let the
// planner see it) or ErrJournal (the intent or the outcome is not in the
// journal: the caller must not carry on as if it were). When the intent
// cannot be journaled, no API call is made.
//
// planSeq is the journal sequence the plan was derived from; attempt counts
// tries of the same key from 1.
func (a *Actuator) Do(ctx context.Context, act planner.Action, planSeq uint64, attempt int) (journal.ActionFact, error) {
	key := act.Key()
	if err := ctx.Err(); err != nil {
		return journal.ActionFact{Key: key, Kind: string(act.Kind)}, fmt.Errorf("actuator: %s not started: %w", key, err)
	}
	intent, err := intentFact(act, planSeq, attempt)
	if err != nil {
		return intent, err
	}
	if err := a.append(ctx, journal.KindActionIntended, key, intent); err != nil {
		intent.Action = nil
		return intent, err
	}

	return a.finish(ctx, act, intent)
}

// finish makes the write of an action whose intent is durable and journals
// its outcome: the second half of Do, and all of Execute. The request is
// built only now, so that even a malformed action leaves an intent and a
// failure in the journal rather than vanishing: the planner must see it
// failed.
func (a *Actuator) finish(ctx context.Context, act planner.Action, intent journal.ActionFact) (journal.ActionFact, error) {
	key := intent.Key
	start := time.Now()
	var rv string
	var callErr error
	var measured *journal.Measurement
	if act.Kind == planner.Measure {
		measured = a.measure(ctx, act) // writes nothing; never fails
	} else {
		rv, callErr = a.perform(ctx, act)
	}
	a.m.observe(act.Kind, time.Since(start), callErr)

	out := intent
	out.Action = nil // intents only: the outcome points back by key
	out.Measurement = measured
	kind := journal.KindActionSucceeded
	if callErr != nil {
		kind = journal.KindActionFailed
		out.Class = Classify(callErr)
		out.Error = callErr.Error()
	} else {
		out.ResultVersion = rv
	}
	// NB: the write has happened (or failed) whatever ctx says now; a
	// cancelled ctx must not keep its outcome out of the journal.
	if err := a.append(context.WithoutCancel(ctx), kind, key, out); err != nil {
		if callErr != nil {
			return out, errors.Join(callErr, err)
		}
		return out, err
	}
	if callErr != nil {
		a.log.Debug("actuator: action failed", "action", describe(act), "class", out.Class, "err", callErr)
		if errors.Is(callErr, ErrInvalidAction) {
			return out, callErr // already says what and why
		}
		return out, fmt.Errorf("actuator: %s: %w", key, callErr)
	}
	a.log.Debug("actuator: action succeeded", "action", describe(act), "resourceVersion", rv)
	return out, nil
}

func (a *Actuator) append(ctx context.Context, kind journal.Kind, key string, f journal.ActionFact) error {
	body, err := journal.EncodeBody(f)
	if err == nil {
		// The record key is the action's key: intent and outcome share it,
		// and it starts "<kind>/<namespace>/..." so the outbox files the
		// record under the object's namespace.
		_, err = a.journal.Append(ctx, nil, journal.Entry{Kind: kind, Key: key, Body: body})
	}
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrJournal, kind, key, err)
	}
	return nil
}

// perform makes the action's one write and returns the resourceVersion it
// returned.
func (a *Actuator) perform(ctx context.Context, act planner.Action) (string, error) {
	switch act.Kind {
	case planner.Gate:
		return a.gate(ctx, act, false)
	case planner.Ungate:
		return a.gate(ctx, act, true)
	case planner.Patch:
		return a.patch(ctx, act)
	case planner.Resize:
		return a.resize(ctx, act)
	case planner.Recreate:
		return a.recreate(ctx, act)
	case planner.Status:
		return a.status(ctx, act)
	case planner.Event:
		return a.event(ctx, act)
	default:
		return "", invalidActionf("unknown action kind %q", act.Kind)
	}
}

// splitRef splits "namespace/name".
func splitRef(what, ref string) (ns, name string, err error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", invalidActionf("%s %q is not namespace/name", what, ref)
	}
	return ns, name, nil
}

// podRef checks what every pod action needs: a pod and its UID, the
// precondition that keeps a write off a replacement pod of the same name.
func podRef(act planner.Action) (ns, name string, err error) {
	ns, name, err = splitRef("pod", act.Pod)
	if err != nil {
		return "", "", err
	}
	if act.UID == "" {
		return "", "", invalidActionf("%s of %s has no UID precondition", act.Kind, act.Pod)
	}
	return ns, name, nil
}

// intentFact is the body of act's ActionIntended record.
func intentFact(act planner.Action, planSeq uint64, attempt int) (journal.ActionFact, error) {
	f := journal.ActionFact{
		Key:      act.Key(),
		Kind:     string(act.Kind),
		Rollout:  act.Rollout,
		Pod:      act.Pod,
		UID:      act.UID,
		Revision: act.Revision,
		PlanSeq:  planSeq,
		Attempt:  attempt,
	}
	body, err := journal.EncodeBody(act)
	if err != nil {
		return f, fmt.Errorf("%w: %s: %w", ErrJournal, f.Key, err)
	}
	f.Action = body
	return f, nil
}

// describe is act.String() for logs. NB: Action.String dereferences
// Status for a Status action, and a malformed one without it must be
// journaled as invalid, not crash the actuator while logging.
func describe(act planner.Action) string {
	if act.Kind == planner.Status && act.Status == nil {
		return act.Key()
	}
	return act.String()
}
