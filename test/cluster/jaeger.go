package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// JaegerVersion is the jaegertracing/jaeger module version whose
// cmd/jaeger (Jaeger v2, built on the OpenTelemetry Collector) the tests
// run as a real trace backend: OTLP in, the query API out.
const JaegerVersion = "v1.75.0"

// BuildJaeger builds Jaeger into the cache once (about 10 minutes cold on
// two cores) and returns the binary.
func BuildJaeger(ctx context.Context, progress io.Writer) (string, error) {
	return ModuleBuild(ctx, progress, "jaeger-"+JaegerVersion, "github.com/jaegertracing/jaeger", JaegerVersion, "cmd/jaeger")
}

// Jaeger is a Jaeger all-in-one with in-memory storage on loopback.
type Jaeger struct {
	// OTLP is the OTLP/HTTP receiver's base URL (OTEL_EXPORTER_OTLP_ENDPOINT).
	OTLP string
	// Query is the query API's base URL.
	Query string
	proc  *Process
}

// StartJaeger starts Jaeger for t, stopped at cleanup.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin, err := BuildJaeger(ctx, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	// The stock all-in-one config, cut to what a test needs, every
	// listener on loopback and the collector's own telemetry off.
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
extensions:
  jaeger_storage:
    backends: {memstore: {memory: {max_traces: 100000}}}
  jaeger_query:
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:%d"}
    grpc: {endpoint: "127.0.0.1:%d"}
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:%d"}
      grpc: {endpoint: "127.0.0.1:%d"}
processors:
  batch: {timeout: 200ms}
exporters:
  jaeger_storage_exporter: {trace_storage: memstore}
`, ports[0], ports[1], ports[2], ports[3])
	if err := os.WriteFile(filepath.Join(dir, "jaeger.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{OTLP: fmt.Sprintf("http://127.0.0.1:%d", ports[2]), Query: fmt.Sprintf("http://127.0.0.1:%d", ports[0])}
	if j.proc, err = StartProcess("jaeger", dir, bin, []string{"--config", filepath.Join(dir, "jaeger.yaml")}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Stop)
	err = j.proc.WaitFor(context.Background(), time.Minute, "serving its query API", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, j.Query+"/api/services", "")
	})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// Stop ends the process.
func (j *Jaeger) Stop() { j.proc.Stop(10 * time.Second) }

// JaegerSpan is a span as Jaeger's query API returns it.
type JaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

// Tag is the value of a span's tag, as text.
func (s JaegerSpan) Tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// Trace reads a trace by ID through the query API (what the UI reads);
// no trace yet is no spans and no error.
func (j *Jaeger) Trace(traceID string) ([]JaegerSpan, error) {
	resp, err := http.Get(j.Query + "/api/traces/" + traceID)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("jaeger: trace %s: %s: %s", traceID, resp.Status, body)
	}
	var out struct {
		Data []struct {
			Spans []JaegerSpan `json:"spans"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("jaeger: trace %s: %w", traceID, err)
	}
	var spans []JaegerSpan
	for _, d := range out.Data {
		spans = append(spans, d.Spans...)
	}
	return spans, nil
}
