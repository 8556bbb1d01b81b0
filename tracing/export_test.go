package tracing

import (
	"context"
	"reflect"
	"sort"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"rollbook.dev/rollbook/projections"
)

// otelEnv are the variables NewExporter and the exporters read; every
// export test starts from all of them unset, whatever the machine has.
var otelEnv = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
}

func clearOTelEnv(t *testing.T) {
	for _, k := range otelEnv {
		t.Setenv(k, "")
	}
}

// exportScenario builds the scenario's spans and exports them through the
// exporter NewExporter makes from the environment; returns what was built
// and what the receiver got.
func exportScenario(t *testing.T, rc *receiver) ([]gotSpan, []gotSpan, *world) {
	t.Helper()
	ctx := context.Background()
	w := newWorld(t)
	w.scenario()
	spans, err := Build(ctx, w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	exp, err := NewExporter(ctx)
	if err != nil || exp == nil {
		t.Fatalf("NewExporter: %v, %v", exp, err)
	}
	if err := Export(ctx, exp, spans); err != nil {
		t.Fatal(err)
	}
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got, requests := rc.received()
	if requests == 0 {
		t.Fatal("the receiver got no request")
	}
	return sdkSpans(spans), got, w
}

// checkReceived: the receiver got every span built, unchanged, as one tree
// per rollout, every action with its attributes, failures as errors.
func checkReceived(t *testing.T, built, got []gotSpan, w *world, service string) {
	t.Helper()
	if len(got) != len(built) {
		t.Fatalf("received %d spans, built %d", len(got), len(built))
	}
	byID := checkTrees(t, got)
	checkActions(t, w.acts, scenarioUIDs, byID)
	for _, b := range built {
		g, ok := byID[b.SpanID]
		if !ok {
			t.Errorf("span %s %q not received", b.SpanID, b.Name)
			continue
		}
		if g.Resource["service.name"] != service || g.Resource["telemetry.sdk.language"] != "go" {
			t.Errorf("span %s: resource %v, want service.name %q and the SDK's attributes", b.SpanID, g.Resource, service)
		}
		g.Resource, b.Resource = nil, nil
		sort.Strings(g.Events)
		sort.Strings(b.Events)
		if !reflect.DeepEqual(g, b) {
			t.Errorf("span %s changed on the way:\nbuilt    %+v\nreceived %+v", b.SpanID, b, g)
		}
	}
	// The failures are errors on the wire too.
	var errs int
	for _, s := range got {
		if s.Status == "Error" {
			errs++
		}
	}
	// conflict, abandoned, throttled (web); invalid patch and its pod (api).
	if errs != 5 {
		t.Errorf("%d error spans received, want 5", errs)
	}
	web := only(t, got, "rollout "+webKey, RolloutTraceID(webUID).String())
	if web.Status != "Ok" || web.Attrs[AttrPhase] != projections.PhaseSucceeded {
		t.Errorf("web rollout: %s %v", web.Status, web.Attrs)
	}
}

// TestExportOTLPHTTP: spans go out through the real otlptracehttp exporter,
// configured only by OTEL_EXPORTER_OTLP_ENDPOINT, to a receiver that
// decodes the OTLP protobuf a collector would get.
func TestExportOTLPHTTP(t *testing.T) {
	clearOTelEnv(t)
	rc, url := newHTTPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	built, got, w := exportScenario(t, rc)
	checkReceived(t, built, got, w, DefaultServiceName)
}

// TestExportOTLPHTTPTracesEndpointGzip: the signal-specific endpoint (a
// full URL, used as is) and compression are honoured.
func TestExportOTLPHTTPTracesEndpointGzip(t *testing.T) {
	clearOTelEnv(t)
	rc, url := newHTTPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url+"/v1/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	t.Setenv("OTEL_SERVICE_NAME", "rollbook-canary")
	built, got, w := exportScenario(t, rc)
	checkReceived(t, built, got, w, "rollbook-canary")
}

// TestExportOTLPGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc selects the gRPC
// exporter; the spans arrive the same.
func TestExportOTLPGRPC(t *testing.T) {
	clearOTelEnv(t)
	rc, url := newGRPCReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment=test")
	built, got, w := exportScenario(t, rc)
	checkReceived(t, built, got, w, "from-attributes")
	if got[0].Resource["deployment.environment"] != "test" {
		t.Errorf("resource %v lacks OTEL_RESOURCE_ATTRIBUTES", got[0].Resource)
	}
}

// TestNewExporterFromEnv: when tracing is off NewExporter returns nil (and
// Export then does nothing); settings it cannot honour are errors.
func TestNewExporterFromEnv(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		on, err bool
	}{
		{name: "nothing set", env: nil},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{name: "traces endpoint, grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, on: true},
		{name: "otlp with the default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{name: "sdk not disabled", env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{name: "exporter none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{name: "exporter zipkin", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
		{name: "http/json", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: true},
		{name: "signal protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, on: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			exp, err := NewExporter(ctx)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error: %v", err, tc.err)
			}
			if (exp != nil) != tc.on {
				t.Fatalf("exporter %v, want one: %v", exp, tc.on)
			}
			if exp != nil {
				if err := exp.Shutdown(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// Tracing off: Export is a no-op, not an error.
	if err := Export(ctx, nil, []sdktrace.ReadOnlySpan{tracetest.SpanStub{Name: "x"}.Snapshot()}); err != nil {
		t.Fatal(err)
	}
}
