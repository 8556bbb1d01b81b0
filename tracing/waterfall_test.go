package tracing

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"rollbook.dev/rollbook/planner"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the output")

// TestWaterfall: the scenario's waterfall, in tree order with indentation,
// offsets, durations and bars scaled to the rollout, failures and open
// spans marked. Record times come from the test's clock, so the whole text
// is fixed: it is compared with testdata/waterfall.golden (-rewrite
// regenerates it; commit a diff only when understood), and the properties
// that matter are also checked one by one.
func TestWaterfall(t *testing.T) {
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
	out := b.String()

	golden := filepath.Join("testdata", "waterfall.golden")
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("waterfall differs from %s (-rewrite to accept):\n%s", golden, out)
	}

	lines := strings.Split(out, "\n")
	if want := "trace " + planner.TraceID(webUID) + "  rollout shop/web-2-0  4 pods  49.7s"; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	if !strings.HasPrefix(lines[2], "rollout shop/web-2-0 ") || !strings.HasSuffix(lines[2], "|"+strings.Repeat("█", barWidth)+"|") {
		t.Errorf("the root's line %q: want the full bar", lines[2])
	}
	// Tree order and indentation.
	pos := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("no line starts with %q in\n%s", prefix, out)
		return -1
	}
	order := []string{"  step 0 ", "    pod shop/web-0 ", "      gate ", "    pod shop/web-1 ", "      patch #2 ", "  step 1 ", "    pod shop/web-2 ", "      patch #3 ", "    pod shop/web-3 "}
	for i := 1; i < len(order); i++ {
		if pos(order[i-1]) >= pos(order[i]) {
			t.Errorf("%q comes after %q", order[i-1], order[i])
		}
	}
	for _, tc := range []struct{ prefix, has string }{
		{"  step 1 ", "+9.46s       40.24s  |         ███"},
		{"      patch  ", "✗ conflict: Operation cannot be fulfilled"},
		{"      patch #2 ", "+45.04s         60ms"},
		{"rollout shop/api-1 ", "… open"},
	} {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, tc.prefix) && strings.Contains(l, tc.has) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line %q…%q in\n%s", tc.prefix, tc.has, out)
		}
	}
	if !strings.Contains(out, "✗ abandoned: the controller stopped before the outcome was known") {
		t.Errorf("the abandoned patch is not marked")
	}
}

// TestWaterfallOrphans: spans whose parent is missing each start a tree.
func TestWaterfallOrphans(t *testing.T) {
	w := newWorld(t)
	w.scenario()
	spans, err := Build(context.Background(), w.j.Read, webKey)
	if err != nil {
		t.Fatal(err)
	}
	var pods []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if strings.HasPrefix(s.Name(), "pod ") {
			pods = append(pods, s)
		}
	}
	var b strings.Builder
	if err := Waterfall(&b, pods); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\ntrace "); n != 3 { // 4 blocks, 3 after the first
		t.Errorf("%d trace blocks after the first, want 3:\n%s", n, b.String())
	}
}
