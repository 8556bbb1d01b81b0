package tracing

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// barWidth is the width of the waterfall's bar column, in characters.
const barWidth = 48

// Waterfall writes spans as a text waterfall, one block per trace:
//
//	trace 5d2c…  rollout shop/web  4 pods  12.4s
//	SPAN                     START      DURATION  |                                                |
//	rollout shop/web            +0s        12.4s  |████████████████████████████████████████████████|
//	  step 0                    +0s         5.1s  |████████████████████                            |
//	    pod shop/web-0       +102ms         2.3s  | █████████                                      |
//	      gate               +102ms         11ms  | █                                              |
//
// Spans are in tree order (children by start time) and indented by depth;
// START is the offset from the trace's root, and the bar is scaled to the
// root span (stretched to cover any span that ends after it). A span whose
// parent is not among spans starts a tree of its own. An action tried
// again is labelled with its try ("patch #2"); a span still open ends its
// line with "… open", a failed one with "✗ " and the status description.
func Waterfall(w io.Writer, spans []sdktrace.ReadOnlySpan) error {
	type key struct {
		t trace.TraceID
		s trace.SpanID
	}
	byID := make(map[key]sdktrace.ReadOnlySpan, len(spans))
	for _, s := range spans {
		byID[key{s.SpanContext().TraceID(), s.SpanContext().SpanID()}] = s
	}
	children := map[key][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		p := key{s.SpanContext().TraceID(), s.Parent().SpanID()}
		if _, ok := byID[p]; s.Parent().IsValid() && ok {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	order := func(l []sdktrace.ReadOnlySpan) {
		sort.SliceStable(l, func(i, j int) bool {
			a, b := l[i], l[j]
			if !a.StartTime().Equal(b.StartTime()) {
				return a.StartTime().Before(b.StartTime())
			}
			if a.Name() != b.Name() {
				return a.Name() < b.Name()
			}
			as, bs := a.SpanContext().SpanID(), b.SpanContext().SpanID()
			return as.String() < bs.String()
		})
	}
	order(roots)
	for _, l := range children {
		order(l)
	}

	type line struct {
		s     sdktrace.ReadOnlySpan
		depth int
	}
	bw := bufio.NewWriter(w)
	for i, root := range roots {
		var lines []line
		var walk func(s sdktrace.ReadOnlySpan, d int)
		walk = func(s sdktrace.ReadOnlySpan, d int) {
			lines = append(lines, line{s, d})
			for _, c := range children[key{s.SpanContext().TraceID(), s.SpanContext().SpanID()}] {
				walk(c, d+1)
			}
		}
		walk(root, 0)

		t0, t1 := root.StartTime(), root.EndTime()
		labelW, pods := len("SPAN"), 0
		for _, l := range lines {
			t1 = later(l.s.EndTime(), t1)
			labelW = max(labelW, 2*l.depth+utf8.RuneCountInString(label(l.s)))
			if strings.HasPrefix(l.s.Name(), "pod ") {
				pods++
			}
		}
		total := t1.Sub(t0)
		if i > 0 {
			fmt.Fprintln(bw)
		}
		plural := "s"
		if pods == 1 {
			plural = ""
		}
		fmt.Fprintf(bw, "trace %s  %s  %d pod%s  %s\n", root.SpanContext().TraceID(), root.Name(), pods, plural, fmtDuration(total))
		fmt.Fprintf(bw, "%-*s %10s %12s  |%s|\n", labelW, "SPAN", "START", "DURATION", strings.Repeat(" ", barWidth))
		for _, l := range lines {
			s := l.s
			fmt.Fprintf(bw, "%-*s %10s %12s  |%s|", labelW, strings.Repeat("  ", l.depth)+label(s),
				"+"+fmtDuration(s.StartTime().Sub(t0)), fmtDuration(s.EndTime().Sub(s.StartTime())),
				bar(s.StartTime().Sub(t0), s.EndTime().Sub(t0), total))
			if attr(s, AttrOpen) == "true" {
				fmt.Fprint(bw, " … open")
			}
			if st := s.Status(); st.Code == codes.Error {
				fmt.Fprintf(bw, " ✗ %s", st.Description)
			}
			fmt.Fprintln(bw)
		}
	}
	return bw.Flush()
}

// label is a span's name, with the try for an action tried again.
func label(s sdktrace.ReadOnlySpan) string {
	if t := attr(s, AttrTry); t != "" && t != "1" {
		return s.Name() + " #" + t
	}
	return s.Name()
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// bar draws [from, to) of total in barWidth cells; every span gets at
// least one cell, so instant actions still show where they happened.
func bar(from, to, total time.Duration) string {
	if total <= 0 {
		total = 1
	}
	a := int(int64(from) * barWidth / int64(total))
	b := int((int64(to)*barWidth + int64(total) - 1) / int64(total))
	a = min(max(a, 0), barWidth-1)
	b = min(max(b, a+1), barWidth)
	return strings.Repeat(" ", a) + strings.Repeat("█", b-a) + strings.Repeat(" ", barWidth-b)
}

// fmtDuration rounds to what a waterfall can show: milliseconds below a
// minute, seconds above.
func fmtDuration(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}
