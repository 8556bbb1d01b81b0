package journal

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestVerifyInPartsAsOnePass: a log broken at any record, in each of the
// ways TestVerifyFindsCorruption breaks one, verified in parts reports
// what one pass reports: the same count of good records and the same
// error, at the same record, for the same reason. Parts of the twelve
// records start at 7 (two parts), 5 and 9 (three), 3, 5, 7 and 9 (five), so
// breaks land on and beside part boundaries.
func TestVerifyInPartsAsOnePass(t *testing.T) {
	ctx := testCtx(t)
	const records = 12
	breaks := []struct {
		name string
		fn   func(t *testing.T, db *pebble.DB, seq uint64)
	}{
		{"intact", nil},
		{"flipped byte", func(t *testing.T, db *pebble.DB, seq uint64) {
			v := getValue(t, db, seq)
			v[len(v)/2] ^= 0x01
			if err := db.Set(logKey(seq), v, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}},
		{"forged record", func(t *testing.T, db *pebble.DB, seq uint64) {
			r, err := DecodeRecord(getValue(t, db, seq))
			if err != nil {
				t.Fatal(err)
			}
			r.Key = "pods/shop/forged"
			v, _, err := encodeRecord(&r)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Set(logKey(seq), v, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted record", func(t *testing.T, db *pebble.DB, seq uint64) {
			if err := db.Delete(logKey(seq), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}},
	}
	broken := 0
	for _, b := range breaks {
		for seq := uint64(1); seq <= records; seq++ {
			if b.fn == nil && seq > 1 {
				break
			}
			dir := t.TempDir()
			j, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			entries := make([]Entry, records)
			for i := range entries {
				entries[i] = entry(t, i)
			}
			if _, err := j.Append(ctx, nil, entries...); err != nil {
				t.Fatal(err)
			}
			j.Close()
			if b.fn != nil {
				tamper(t, dir, func(db *pebble.DB) { b.fn(t, db, seq) })
			}
			if j, err = Open(dir, Options{}); err != nil {
				continue // a corrupt last record: Open refuses the log (TestVerifyFindsCorruption)
			}
			wantN, wantErr := j.verify(ctx, 1, 1, nil)
			if wantErr != nil {
				broken++
				if _, ok := errors.AsType[*LinkError](wantErr); !ok {
					t.Fatalf("%s at %d: one pass: %v, want a LinkError", b.name, seq, wantErr)
				}
			}
			for _, parts := range []int{2, 3, 5} {
				n, err := j.verify(ctx, parts, 1, nil)
				if n != wantN || (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
					t.Errorf("%s at %d, %d parts: %d, %v; one pass: %d, %v", b.name, seq, parts, n, err, wantN, wantErr)
				}
			}
			// VerifyEach: one pass's answer, and every record that passed
			// handed on, in order.
			var handed []uint64
			n, err := j.VerifyEach(ctx, func(r Record) error { handed = append(handed, r.Seq); return nil })
			if n != wantN || (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Errorf("%s at %d, VerifyEach: %d, %v; one pass: %d, %v", b.name, seq, n, err, wantN, wantErr)
			}
			if uint64(len(handed)) != n || n > 0 && handed[n-1] != n {
				t.Fatalf("%s at %d, VerifyEach handed on records %v, %d passed", b.name, seq, handed, n)
			}
			j.Close()
		}
	}
	// Every break but a forged or deleted last record is found.
	if want := 3*records - 3; broken != want {
		t.Errorf("one pass found %d broken logs, want %d", broken, want)
	}
}
