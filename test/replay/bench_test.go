package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
)

// synthJournal writes n records shaped like a large rollout's journal into a
// real Pebble journal: a 10,000-pod fleet's Observed updates (two
// containers, conditions, a readiness gate), ticks, and a plan's intents
// every 2,000 records. Returns the directory.
func synthJournal(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	now := time.Unix(1_800_000_000, 0)
	j, err := journal.Open(dir, journal.Options{NoSync: true, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	const pods = 10000
	batch := make([]journal.Entry, 0, 1000)
	flush := func() {
		if _, err := j.Append(context.Background(), nil, batch...); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 0; i < n; i++ {
		now = now.Add(time.Millisecond)
		switch {
		case i%2000 == 1999:
			a := planner.Action{Kind: planner.Ungate, Pod: fmt.Sprintf("shop/web-%d", i%pods), UID: fmt.Sprintf("uid-%d", i%pods), Reason: planner.ReasonReady, Message: "initial: no update in progress"}
			body, _ := journal.EncodeBody(a)
			f := journal.ActionFact{Key: a.Key(), Kind: string(a.Kind), Pod: a.Pod, UID: a.UID, Action: body, PlanSeq: uint64(i)}
			batch = append(batch, journal.Entry{Kind: journal.KindActionIntended, Key: a.Key(), Body: mustEncode(b, f)})
		case i%500 == 0:
			batch = append(batch, journal.Entry{Kind: journal.KindTick, Key: "tick", Body: mustEncode(b, journal.TickFact{Reason: "plan"})})
		default:
			p := i % pods
			o := journal.Observed{
				Resource: "pods", Namespace: "shop", Name: fmt.Sprintf("web-%d", p), UID: fmt.Sprintf("uid-%d", p),
				ResourceVersion: fmt.Sprint(1000 + i), Labels: map[string]string{"app": "web", "controller-revision-hash": "web-5cc5f548c6"},
				Owner: &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "sts-uid"},
				Pod: &journal.PodFacts{
					NodeName: fmt.Sprintf("node-%d", p%100), Phase: "Running", PodIP: "10.0.0.1",
					ReadinessGates: []string{planner.GateCondition},
					Conditions: []journal.Condition{
						{Type: "Ready", Status: "True", LastTransition: now.UnixNano()},
						{Type: planner.GateCondition, Status: "True", Reason: planner.ReasonReady, LastTransition: now.UnixNano()},
					},
					Containers: []journal.Container{
						{Name: "app", Image: "registry.example/app:v1", ImageID: "registry.example/app@sha256:0123456789abcdef", ContainerID: "containerd://abcdef0123456789", Ready: true, Started: true, State: "running"},
						{Name: "log", Image: "registry.example/log:v1", ImageID: "registry.example/log@sha256:0123456789abcdef", ContainerID: "containerd://0123456789abcdef", Ready: true, Started: true, State: "running"},
					},
				},
			}
			batch = append(batch, journal.Entry{Kind: journal.KindObserved, Key: "pods/shop/" + o.Name, Body: mustEncode(b, &o)})
		}
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	return dir
}

func mustEncode(b *testing.B, v any) []byte {
	body, err := journal.EncodeBody(v)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkReplay replays a 1,000,000-record journal from Pebble through
// projections and the planner (recorded plans re-derived and compared),
// against the baseline of only reading and checking the same records.
// Reports records/s for both and their ratio.
//
//	go test -run '^$' -bench Replay -benchtime 1x ./test/replay/
func BenchmarkReplay(b *testing.B) {
	n := benchRecords
	dir := synthJournal(b, n)
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	var scanRate, replayRate float64
	for range b.N {
		start := time.Now()
		count := 0
		if err := j.Read(ctx, 1, func(journal.Record) error { count++; return nil }); err != nil {
			b.Fatal(err)
		}
		scanRate = float64(count) / time.Since(start).Seconds()

		start = time.Now()
		add, intents := planner.CollectIntents()
		if err := j.Read(ctx, 1, add); err != nil {
			b.Fatal(err)
		}
		rp := planner.NewReplayer(intents(), "")
		rp.KeepGoing = true
		if err := j.Read(ctx, 1, func(r journal.Record) error { _, err := rp.Add(r); return err }); err != nil {
			b.Fatal(err)
		}
		replayRate = float64(n) / time.Since(start).Seconds()
		if rp.Plans == 0 {
			b.Fatal("no plans compared")
		}
	}
	b.ReportMetric(scanRate, "scan-records/s")
	b.ReportMetric(replayRate, "replay-records/s")
	b.ReportMetric(replayRate/scanRate, "replay/scan")
}

// benchRecords is the journal size of BenchmarkReplay (-replay.records).
var benchRecords = 1_000_000

func init() {
	testingFlag(&benchRecords)
}
