package journal

import "testing"

// BenchmarkDecodeObserved is what reading one pod record's body costs
// every reader of the journal (the fold at start-up, replay, status):
// a pod whose strings the interner has seen, as most of a fleet's are.
//
//	go test -run '^$' -bench DecodeObserved -benchmem ./journal/
func BenchmarkDecodeObserved(b *testing.B) {
	body, err := EncodeBody(sampleObserved())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var o Observed
		if err := DecodeObserved(body, &o); err != nil {
			b.Fatal(err)
		}
	}
}
