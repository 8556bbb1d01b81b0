package projections

import (
	"bytes"
	"reflect"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"rollbook.dev/rollbook/journal"
)

// An open intent keeps every field its record's fact has but the encoded
// action; a checkpoint's open intents encode byte for byte as they did
// when they held a journal.ActionFact, and such a checkpoint's decode as
// the fold holds them.
func TestOpenIntentKeepsItsFact(t *testing.T) {
	f := newFolder(t)
	books := NewBooks()
	intent := journal.ActionFact{Key: "patch/ns/web-0", Kind: "patch", Rollout: "ns/web", Pod: "ns/web-0", UID: "u-web-0", Revision: "web-6f9d",
		Action: []byte{0xa0}, PlanSeq: 41, Attempt: 2, TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", PlanActions: 7}
	// Every field of an ActionFact is set here but an outcome's: a field
	// added to it is an intent's until this list says otherwise, and
	// IntentFact must keep it.
	outcomes := []string{"ResultVersion", "Error", "Class", "Measurement"}
	v := reflect.ValueOf(intent)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; v.Field(i).IsZero() && !slices.Contains(outcomes, name) {
			t.Fatalf("the intent leaves %s unset: set it, or list it among an outcome's fields", name)
		}
	}
	if err := books.Apply(f.record(journal.KindActionIntended, intent.Key, intent)); err != nil {
		t.Fatal(err)
	}
	want := intent
	want.Action = nil
	if got := books.Open[intent.Key].Fact.ActionFact(); !reflect.DeepEqual(got, want) {
		t.Errorf("the open intent holds\n%+v\nwant\n%+v", got, want)
	}

	type openIntentAsItWas struct {
		Seq  uint64
		Fact journal.ActionFact
	}
	coreDet, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	was, err := coreDet.Marshal(map[string]openIntentAsItWas{intent.Key: {Seq: books.Open[intent.Key].Seq, Fact: want}})
	if err != nil {
		t.Fatal(err)
	}
	if is, err := coreDet.Marshal(books.Open); err != nil || !bytes.Equal(is, was) {
		t.Errorf("open intents encode as %x (%v), were %x", is, err, was)
	}
	var back map[string]OpenIntent
	if err := journal.DecodeBody(was, &back); err != nil || !reflect.DeepEqual(back, books.Open) {
		t.Errorf("an older checkpoint's open intents read as %+v (%v), want %+v", back, err, books.Open)
	}
}
