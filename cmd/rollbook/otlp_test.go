package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a real OTLP/HTTP trace receiver on loopback: it decodes
// what the controller's OTLP exporter sends, as a collector would.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string]*tracepb.Span // span ID → span (a re-export after a crash sends the same span again)
	sends int
	url   string
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{spans: map[string]*tracepb.Span{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Method != http.MethodPost {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.sends++
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					rc.spans[hex.EncodeToString(s.SpanId)] = s
				}
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rc.url = "http://" + ln.Addr().String()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.url)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	return rc
}

// tree checks the received spans form one tree per trace: one root, every
// parent present. It returns the spans by name.
func (rc *otlpReceiver) tree() (map[string][]*tracepb.Span, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	roots := map[string]int{}
	byName := map[string][]*tracepb.Span{}
	for _, s := range rc.spans {
		byName[s.Name] = append(byName[s.Name], s)
		if len(s.ParentSpanId) == 0 {
			roots[hex.EncodeToString(s.TraceId)]++
			continue
		}
		p, ok := rc.spans[hex.EncodeToString(s.ParentSpanId)]
		if !ok {
			return nil, fmt.Errorf("span %s %q: parent %x not received", hex.EncodeToString(s.SpanId), s.Name, s.ParentSpanId)
		}
		if hex.EncodeToString(p.TraceId) != hex.EncodeToString(s.TraceId) {
			return nil, fmt.Errorf("span %q is in another trace than its parent", s.Name)
		}
	}
	for tr, n := range roots {
		if n != 1 {
			return nil, fmt.Errorf("trace %s has %d roots", tr, n)
		}
	}
	return byName, nil
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// checkSpans: what the controller exported live is what the journal says
// happened: every span rebuilt from the journal was received, with the
// same parent, in one tree per rollout.
func checkSpans(t *testing.T, rc *otlpReceiver, dir string, rollouts ...string) {
	t.Helper()
	if _, err := rc.tree(); err != nil {
		t.Fatalf("received spans: %v", err)
	}
	src := recordSource{dir: filepath.Join(dir, "journal")}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, ro := range rollouts {
		built, err := spansFrom(context.Background(), src, ro)
		if err != nil {
			t.Fatal(err)
		}
		actions := 0
		for _, s := range built {
			got, ok := rc.spans[s.SpanContext().SpanID().String()]
			if !ok {
				t.Fatalf("%s: span %q (%s) rebuilt from the journal was never exported", ro, s.Name(), s.SpanContext().SpanID())
			}
			if hex.EncodeToString(got.ParentSpanId) != parentHex(s) {
				t.Fatalf("%s: span %q exported under another parent", ro, s.Name())
			}
			if attr(s, "k8s.pod.uid") != "" && attr(s, "rollbook.action.kind") != "" {
				actions++
			}
		}
		t.Logf("%s: %d spans rebuilt from the journal, all received (%d pod actions); receiver got %d spans in %d exports", ro, len(built), actions, len(rc.spans), rc.sends)
	}
}

func parentHex(s sdktrace.ReadOnlySpan) string {
	if !s.Parent().IsValid() {
		return ""
	}
	return s.Parent().SpanID().String()
}

// hasRoot reports whether a root (rollout) span has been received.
func (rc *otlpReceiver) hasRoot() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, s := range rc.spans {
		if len(s.ParentSpanId) == 0 {
			return true
		}
	}
	return false
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}
