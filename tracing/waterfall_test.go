package tracing

import (
	"context"
	"strings"
	"testing"
)

func TestWaterfallPrint(t *testing.T) {
	w := newWorld(t)
	w.scenario()
	spans, err := Build(context.Background(), w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Waterfall(&b, spans); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}
