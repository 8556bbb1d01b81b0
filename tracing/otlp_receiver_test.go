package tracing

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receiver is a minimal OTLP trace receiver: what a collector does with an
// export request, minus everything after decoding it. It speaks OTLP/HTTP
// (POST /v1/traces, protobuf, optionally gzip) and OTLP/gRPC.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer

	mu       sync.Mutex
	spans    []gotSpan
	requests int
}

// newHTTPReceiver serves OTLP/HTTP on 127.0.0.1 and returns the receiver
// and its base URL, for OTEL_EXPORTER_OTLP_ENDPOINT.
func newHTTPReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(rc.serveHTTP))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

// newGRPCReceiver serves OTLP/gRPC on 127.0.0.1 and returns the receiver
// and an http:// URL (the scheme tells the exporter not to use TLS).
func newGRPCReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	rc := &receiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, rc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return rc, "http://" + ln.Addr().String()
}

func (rc *receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "only POST /v1/traces", http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.add(&req)
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func (rc *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rc.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (rc *receiver) add(req *coltracepb.ExportTraceServiceRequest) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = anyString(kv.GetValue())
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				g := protoSpan(s)
				g.Resource, g.Scope = res, ss.GetScope().GetName()
				rc.spans = append(rc.spans, g)
			}
		}
	}
}

// received returns what has arrived. Exports are synchronous (the
// exporter returns after the receiver answered), so no waiting is needed.
func (rc *receiver) received() ([]gotSpan, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]gotSpan(nil), rc.spans...), rc.requests
}

func protoSpan(s *tracepb.Span) gotSpan {
	g := gotSpan{
		TraceID: hex.EncodeToString(s.GetTraceId()),
		SpanID:  hex.EncodeToString(s.GetSpanId()),
		Parent:  hex.EncodeToString(s.GetParentSpanId()),
		Name:    s.GetName(),
		Kind:    s.GetKind().String(),
		Start:   time.Unix(0, int64(s.GetStartTimeUnixNano())).UTC(),
		End:     time.Unix(0, int64(s.GetEndTimeUnixNano())).UTC(),
		Attrs:   map[string]string{},
	}
	for _, kv := range s.GetAttributes() {
		g.Attrs[kv.GetKey()] = anyString(kv.GetValue())
	}
	for _, e := range s.GetEvents() {
		g.Events = append(g.Events, e.GetName())
	}
	for _, l := range s.GetLinks() {
		g.Links = append(g.Links, hex.EncodeToString(l.GetSpanId()))
	}
	switch s.GetStatus().GetCode() {
	case tracepb.Status_STATUS_CODE_ERROR:
		g.Status = "Error"
	case tracepb.Status_STATUS_CODE_OK:
		g.Status = "Ok"
	default:
		g.Status = "Unset"
	}
	g.StatusDesc = s.GetStatus().GetMessage()
	return g
}

// anyString renders an OTLP value as gotSpan does an attribute.Value.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, anyString(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return ""
}
