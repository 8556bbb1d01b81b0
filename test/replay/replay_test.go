// Package replay replays journals recorded by the end-to-end tests (real
// rollouts on the real node and on kwok, written by
// `ROLLBOOK_WRITE_FIXTURES=test/replay/testdata go test ./cmd/rollbook`)
// through today's projections and planner. A planner change that alters
// what Rollbook would do fails here, with the first divergence.
package replay

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

func fixtures(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no replay fixtures in testdata: record them with ROLLBOOK_WRITE_FIXTURES")
	}
	return paths
}

// load reads a fixture's records, checking the hash chain.
func load(t *testing.T, path string) []journal.Record {
	t.Helper()
	var out []journal.Record
	var prev [32]byte
	err := journal.ReadExportFile(path, func(r journal.Record) error {
		if r.Prev != prev || r.Seq != uint64(len(out)+1) {
			return fmt.Errorf("%s: record %d breaks the chain", path, r.Seq)
		}
		prev = r.Hash
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func replay(t *testing.T, recs []journal.Record) *planner.Replayer {
	t.Helper()
	add, intents := planner.CollectIntents()
	for _, r := range recs {
		if err := add(r); err != nil {
			t.Fatal(err)
		}
	}
	rp := planner.NewReplayer(intents(), "")
	// Replay plans as the controller does, incrementally; every plan is
	// also made by Plan, the definition, and must be the same.
	rp.CrossCheck = true
	for _, r := range recs {
		ok, err := rp.Add(r)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
	}
	return rp
}

// TestRecordedRolloutsReplay: every recorded rollout replays exactly.
func TestRecordedRolloutsReplay(t *testing.T) {
	for _, path := range fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			recs := load(t, path)
			rp := replay(t, recs)
			if len(rp.Divergences) > 0 {
				t.Fatalf("replay diverged (a planner change alters recorded behaviour; if intended, re-record the fixtures):\n%s", rp.Divergences[0].String())
			}
			if rp.Actions == 0 {
				t.Fatalf("fixture has no recorded actions: nothing was compared")
			}
			full, partial := rp.PlanKinds()
			if partial == 0 {
				t.Fatalf("no plan was made incrementally (%d full): the cross-check compared nothing", full)
			}
			t.Logf("%d records, %s; incremental planner: %d full plans, %d partial, each the same as Plan's", len(recs), rp.Summary(), full, partial)
		})
	}
}

// TestChangedPlanFixtureDiverges: a journal whose recorded plan differs from
// what the planner derives (as after a planner change) fails replay with a
// divergence that names the record and both actions. The fixture is
// re-chained, so it is a valid journal: only the plan changed.
func TestChangedPlanFixtureDiverges(t *testing.T) {
	recs := load(t, fixtures(t)[0])
	// Change the first patch intent's target image, as a planner that
	// picked another image would have recorded.
	changed := -1
	for i, r := range recs {
		if r.Kind != journal.KindActionIntended || intentFact(t, r).Kind != string(planner.Patch) {
			continue
		}
		rewriteIntent(t, &recs[i], func(f *journal.ActionFact) {
			var a planner.Action
			if err := journal.DecodeBody(f.Action, &a); err != nil {
				t.Fatal(err)
			}
			a.Images[0].To += "-changed"
			var err error
			if f.Action, err = journal.EncodeBody(a); err != nil {
				t.Fatal(err)
			}
		})
		changed = i
		break
	}
	if changed < 0 {
		t.Fatal("fixture has no patch intent")
	}
	recs = rechain(t, recs)
	rp := replay(t, recs)
	if len(rp.Divergences) == 0 {
		t.Fatal("replay did not notice the changed plan")
	}
	d := rp.Divergences[0].String()
	if !strings.Contains(d, "-changed") || !strings.Contains(d, fmt.Sprintf("intent record %d", recs[changed].Seq)) {
		t.Fatalf("divergence does not show the changed action and its record:\n%s", d)
	}
	t.Logf("divergence as printed:\n%s", d)
}

// intentFact decodes an ActionIntended record's fact.
func intentFact(t *testing.T, r journal.Record) journal.ActionFact {
	t.Helper()
	var f journal.ActionFact
	if err := r.Decode(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

// rewriteIntent edits an ActionIntended record's fact in place (rechain
// makes the journal valid again).
func rewriteIntent(t *testing.T, r *journal.Record, edit func(*journal.ActionFact)) {
	t.Helper()
	f := intentFact(t, *r)
	edit(&f)
	b, err := journal.EncodeBody(f)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = b
}

// rechain writes records into a real journal with their recorded times and
// reads them back: a valid chain over the edited content.
func rechain(t *testing.T, recs []journal.Record) []journal.Record {
	t.Helper()
	var now time.Time
	j, err := journal.Open(t.TempDir(), journal.Options{Now: func() time.Time { return now }, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	out := make([]journal.Record, 0, len(recs))
	for _, r := range recs {
		now = r.Time
		got, err := j.Append(t.Context(), nil, journal.Entry{Kind: r.Kind, Key: r.Key, Body: r.Body})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got...)
	}
	return out
}

// onePass replays recs in one pass with the given lookahead (0: default).
func onePass(recs []journal.Record, lookahead int) (*planner.OnePass, error) {
	o := planner.NewOnePass(projections.New(), "")
	o.Lookahead = lookahead
	for _, r := range recs {
		ok, err := o.Add(r)
		if err != nil || !ok {
			return o, err
		}
	}
	_, err := o.Finish()
	return o, err
}

// TestOnePassReplaysAsTwo: replay in one read compares the same plans and
// actions as the two passes, on every recorded rollout; with a lookahead
// too short for a journal's intents it says so (ErrLateIntent) instead of
// comparing a plan with part of its intents.
func TestOnePassReplaysAsTwo(t *testing.T) {
	late := 0
	for _, path := range fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			recs := load(t, path)
			two := replay(t, recs)
			one, err := onePass(recs, 0)
			if err != nil {
				t.Fatal(err)
			}
			if one.Plans != two.Plans || one.Actions != two.Actions || len(one.Divergences) != len(two.Divergences) {
				t.Fatalf("one pass: %s; two passes: %s", one.Summary(), two.Summary())
			}
			short, err := onePass(recs, 1)
			switch {
			case errors.Is(err, planner.ErrLateIntent):
				late++
			case err != nil:
				t.Fatal(err)
			case short.Plans != two.Plans || short.Actions != two.Actions || len(short.Divergences) != 0:
				t.Fatalf("lookahead 1: %s; two passes: %s", short.Summary(), two.Summary())
			}
		})
	}
	if late == 0 {
		t.Fatal("no fixture had an intent past a lookahead of 1: ErrLateIntent is untested")
	}
}

// TestOnePassFindsTheChangedPlan: one pass reports a changed plan as two
// passes do.
func TestOnePassFindsTheChangedPlan(t *testing.T) {
	recs := load(t, fixtures(t)[0])
	two := replay(t, recs)
	if len(two.Divergences) != 0 {
		t.Fatal("fixture diverges")
	}
	// Drop the first intent of the first plan that has two or more: the
	// plan then derives one action more than was recorded.
	byPlan := map[uint64]int{}
	for _, r := range recs {
		if r.Kind == journal.KindActionIntended {
			var f journal.ActionFact
			if err := r.Decode(&f); err != nil {
				t.Fatal(err)
			}
			byPlan[f.PlanSeq]++
		}
	}
	drop := -1
	for i, r := range recs {
		if r.Kind != journal.KindActionIntended {
			continue
		}
		var f journal.ActionFact
		if err := r.Decode(&f); err != nil {
			t.Fatal(err)
		}
		if byPlan[f.PlanSeq] >= 2 {
			drop = i
			break
		}
	}
	if drop < 0 {
		t.Fatal("no plan with two intents")
	}
	// The dropped record becomes a cursor record, so sequences stay put.
	recs[drop].Kind, recs[drop].Body = journal.KindCursor, mustCursor(t)
	recs = rechain(t, recs)
	one, err := onePass(recs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Divergences) == 0 {
		t.Fatal("one pass did not notice the missing intent")
	}
	if want := replay(t, recs).Divergences[0].String(); one.Divergences[0].String() != want {
		t.Fatalf("one pass: %s\ntwo passes: %s", one.Divergences[0].String(), want)
	}
}

func mustCursor(t *testing.T) []byte {
	b, err := journal.EncodeBody(journal.CursorFact{Name: "x", ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOnePassFromACheckpoint: replay that starts from a checkpoint's
// state (a pruned journal) compares in one pass what two passes compare,
// intents of plans before the checkpoint included, without falling back.
func TestOnePassFromACheckpoint(t *testing.T) {
	recs := load(t, fixtures(t)[0])
	// Cut just before an intent, so intents right after the cut belong to
	// a plan before it.
	cut := -1
	for i := len(recs) / 2; i < len(recs); i++ {
		if recs[i].Kind == journal.KindActionIntended {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatal("no intent in the fixture's second half")
	}
	stateAt := func() *projections.State {
		s := projections.New()
		for _, r := range recs[:cut] {
			if err := s.Apply(r); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	add, intents := planner.CollectIntents()
	for _, r := range recs[cut:] {
		if err := add(r); err != nil {
			t.Fatal(err)
		}
	}
	two := planner.NewReplayerFrom(stateAt(), intents(), "")
	one := planner.NewOnePass(stateAt(), "")
	for _, r := range recs[cut:] {
		if _, err := two.Add(r); err != nil {
			t.Fatal(err)
		}
		if _, err := one.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := one.Finish(); err != nil {
		t.Fatal(err)
	}
	if one.Plans == 0 || one.Plans != two.Plans || one.Actions != two.Actions || len(one.Divergences)+len(two.Divergences) != 0 {
		t.Fatalf("from record %d: one pass %s; two passes %s", recs[cut].Seq, one.Summary(), two.Summary())
	}
}

// TestPlanCutByALeadersDeathReplays: a stream ends a plan's intents early
// when its leader dies while publishing them, and the next leader goes on
// from there. Each intent says how many actions its plan had, so replay
// compares the journaled ones and counts the plan as cut; an intent that
// claims no more than were journaled still diverges, so the allowance
// cannot hide a planner that derives more.
func TestPlanCutByALeadersDeathReplays(t *testing.T) {
	for _, path := range fixtures(t) {
		recs := load(t, path)
		// The last plan with two intents or more; the journal is cut after
		// its first intent, as a stream the dying leader published one
		// intent of.
		byPlan := map[uint64][]int{}
		var last uint64
		for i, r := range recs {
			if r.Kind != journal.KindActionIntended {
				continue
			}
			f := intentFact(t, r)
			byPlan[f.PlanSeq] = append(byPlan[f.PlanSeq], i)
			if len(byPlan[f.PlanSeq]) == 2 {
				last = f.PlanSeq
			}
		}
		if last == 0 {
			continue
		}
		first := byPlan[last][0]
		withPlanActions := func(n int) []journal.Record {
			out := slices.Clone(recs[:first+1])
			rewriteIntent(t, &out[first], func(f *journal.ActionFact) { f.PlanActions = n })
			return rechain(t, out)
		}
		rp := replay(t, withPlanActions(len(byPlan[last])))
		if len(rp.Divergences) > 0 || rp.Cut != 1 {
			t.Fatalf("%s, cut after the first of %d intents of the plan at %d: %d divergences, %d cut plans; want none and 1:\n%v",
				filepath.Base(path), len(byPlan[last]), last, len(rp.Divergences), rp.Cut, rp.Divergences)
		}
		t.Logf("%s, cut after the first of %d intents of the plan at %d: %s", filepath.Base(path), len(byPlan[last]), last, rp.Summary())
		rp = replay(t, withPlanActions(1))
		if len(rp.Divergences) == 0 || rp.Cut != 0 {
			t.Fatalf("%s: a plan that says it had one action, of which replay derives %d, replayed with no divergence", filepath.Base(path), len(byPlan[last]))
		}
		return
	}
	t.Fatal("no fixture has a plan of two intents or more")
}
