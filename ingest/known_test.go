package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/journal"
)

// TestKnownOnlyWhatIsJournaled: an object observed in a round whose
// records never reached the journal (an error later in the batch, a List
// failing between pages) is journaled when it is seen again, not skipped
// as already known; once appended, seeing it again is a duplicate.
func TestKnownOnlyWhatIsJournaled(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s := &stream{in: &Ingester{opts: Options{Journal: j}}, res: Pods, known: known{}}
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
	}}
	if _, ok, err := s.observe(pod, false); err != nil || !ok {
		t.Fatalf("first sight: ok %v err %v", ok, err)
	}
	// The round fails before its append; the next round starts afresh.
	clear(s.staged)
	e, ok, err := s.observe(pod, false)
	if err != nil || !ok {
		t.Fatalf("seen again after a failed round: ok %v err %v; it would be missing from the journal", ok, err)
	}
	if err := s.append(context.Background(), nil, []journal.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.observe(pod, false); ok {
		t.Fatal("an object already journaled at this version was journaled again")
	}
	if o, ok := s.known.get("pods/ns/a"); !ok || o.RV() != "5" || o.UID() != "u1" {
		t.Fatalf("known set after the append: %+v %v", o, ok)
	}
}

// TestKnownIdentities: whatever the form of a UID and a resourceVersion,
// the known set gives them back as they were, and says an object is
// (uid, rv) exactly when the strings are the same; the forms Kubernetes
// writes take no heap of their own.
func TestKnownIdentities(t *testing.T) {
	uids := []string{"6c3c624b-58db-4bcd-0001-000000000001", "6c3c624b-58db-4bcd-0001-000000000002",
		"00000000-0000-0000-0000-000000000000", "6C3C624B-58DB-4BCD-0001-000000000001", "6c3c624b58db4bcd0001000000000001",
		"6c3c624b-58db-4bcd-0001-00000000000g", "u1", ""}
	rvs := []string{"5", "0", "12345678901234567890", "18446744073709551615", "18446744073709551616", "05", "-5", "+5", "a", ""}
	for _, u := range uids {
		for _, v := range rvs {
			o := makeKnown(u, v)
			if o.UID() != u || o.RV() != v {
				t.Errorf("(%q, %q) is known as (%q, %q)", u, v, o.UID(), o.RV())
			}
			for _, u2 := range uids {
				for _, v2 := range rvs {
					if o.is(u2, v2) != (u == u2 && v == v2) {
						t.Errorf("(%q, %q).is(%q, %q) = %v", u, v, u2, v2, o.is(u2, v2))
					}
				}
			}
		}
	}
	// Held in a known set, each reads back as it was, whatever it
	// replaced; only the odd ones take a second entry.
	var k known
	key := func(i, j int) string { return fmt.Sprintf("pods/ns/p-%d-%d", i, j) }
	odd := 0
	for i, u := range uids {
		for j, v := range rvs {
			k.put(key(i, j), makeKnown("u1", "a"))
			k.put(key(i, j), makeKnown(uids[0], "5"))
			k.put(key(i, j), makeKnown(u, v))
			if makeKnown(u, v).odd != nil {
				odd++
			}
		}
	}
	if len(k.odd) != odd {
		t.Errorf("%d odd identities held for %d", len(k.odd), odd)
	}
	for i, u := range uids {
		for j, v := range rvs {
			if o, ok := k.get(key(i, j)); !ok || o.UID() != u || o.RV() != v {
				t.Errorf("(%q, %q) is held as (%q, %q), %v", u, v, o.UID(), o.RV(), ok)
			}
			k.remove(key(i, j))
			if _, ok := k.get(key(i, j)); ok {
				t.Errorf("(%q, %q) is held after its removal", u, v)
			}
		}
	}
	if len(k.objs)+len(k.odd) != 0 {
		t.Errorf("%d objects and %d odd identities held after every removal", len(k.objs), len(k.odd))
	}
	if o := makeKnown(uids[0], "123"); o.odd != nil {
		t.Errorf("a UUID and a decimal resourceVersion are held as strings: %+v", o)
	}
	if n := testing.AllocsPerRun(100, func() { _ = makeKnown(uids[0], "123").is(uids[0], "123") }); n != 0 {
		t.Errorf("knowing and asking allocate %v times", n)
	}
}

// TestLetGoOnlyPastTheNewestOnRecord: a stream lets its known set go only
// once its watch reaches a version past both its cursor and every version
// its set holds (another writer may have journaled one past the cursor);
// never when a held version is not a number, nor without Options.Reload;
// and while its set is let go, it journals every delete and drops none.
func TestLetGoOnlyPastTheNewestOnRecord(t *testing.T) {
	reload := func(context.Context) (uint64, map[string]KnownObject, error) { return 0, nil, nil }
	uid := "6c3c624b-58db-4bcd-0001-000000000001"
	newStream := func(reloads bool, rvs ...string) *stream {
		in := &Ingester{}
		if reloads {
			in.opts.Reload = reload
		}
		s := &stream{in: in, res: Pods}
		for i, rv := range rvs {
			s.known.put(fmt.Sprintf("pods/ns/p-%d", i), makeKnown(uid, rv))
		}
		return s
	}
	s := newStream(true, "90", "120", "100")
	s.armRelease("100") // the cursor, behind a version another writer journaled
	for _, rv := range []string{"101", "119", "120", "x"} {
		if s.passed(rv); s.letGo {
			t.Fatalf("let go at %s, not past 120, the newest on record", rv)
		}
	}
	if s.passed("121"); !s.letGo || len(s.known.objs) != 0 || s.heldObjects.Load() != 0 || s.in.Stats.Released.Load() != 1 {
		t.Fatalf("past the newest on record: let go %v, %d objects, released %d", s.letGo, len(s.known.objs), s.in.Stats.Released.Load())
	}
	if !s.mayBeLive("pods/ns/p-1") {
		t.Error("let go, the stream would drop a delete it cannot tell from a new one")
	}
	s = newStream(true, "90")
	s.armRelease("130") // a cursor past every held version
	if s.passed("130"); s.letGo {
		t.Fatal("let go at the cursor, not past it")
	}
	if s.passed("131"); !s.letGo {
		t.Fatal("held past the cursor")
	}
	s = newStream(true, "90", "a")
	s.armRelease("100")
	if s.passed("1000"); s.letGo {
		t.Fatal("let go though a held version is not a number")
	}
	s = newStream(false, "90")
	s.armRelease("100")
	if s.passed("1000"); s.letGo {
		t.Fatal("let go without Options.Reload, with nothing to take it back from")
	}
}
