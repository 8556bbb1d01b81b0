package tracing

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// DefaultServiceName is service.name when neither OTEL_SERVICE_NAME nor
// OTEL_RESOURCE_ATTRIBUTES sets it.
const DefaultServiceName = "rollbook"

// NewExporter returns an OTLP span exporter configured by the standard
// environment variables alone, or nil (and no error) when tracing is off:
//
//	OTEL_SDK_DISABLED=true                 off
//	OTEL_TRACES_EXPORTER                   "otlp" (on), "none" (off); anything else is an error
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     where to send; either endpoint set turns tracing on
//	OTEL_EXPORTER_OTLP_ENDPOINT
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL     grpc or http/protobuf (the default)
//	OTEL_EXPORTER_OTLP_PROTOCOL
//	OTEL_SERVICE_NAME                      service.name (default "rollbook")
//	OTEL_RESOURCE_ATTRIBUTES               further resource attributes
//
// and the exporters' own OTEL_EXPORTER_OTLP_[TRACES_]{HEADERS, TIMEOUT,
// COMPRESSION, CERTIFICATE, CLIENT_CERTIFICATE, CLIENT_KEY, INSECURE}.
//
// NB: with no endpoint and no OTEL_TRACES_EXPORTER, tracing is off rather
// than aimed at the spec's default localhost:4318: a controller with no
// collector beside it would otherwise retry into the void forever. Set
// OTEL_TRACES_EXPORTER=otlp to use that default.
//
// The exporter stamps the resource (service.name, telemetry.sdk.*, the
// environment's attributes) on spans that have none, as spans from Build
// and Builder do: they are the same wherever they are built, and the
// resource says who exported them.
func NewExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	on := false
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v != "" {
		for _, e := range strings.Split(v, ",") {
			switch e = strings.TrimSpace(e); e {
			case "none":
				return nil, nil
			case "otlp":
				on = true
			default:
				return nil, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", v)
			}
		}
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		on = true
	}
	if !on {
		return nil, nil
	}
	res, err := Resource(ctx)
	if err != nil {
		return nil, err
	}
	protocol := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	var exp sdktrace.SpanExporter
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTLP protocol %q: want grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter (%s): %w", cmp.Or(protocol, "http/protobuf"), err)
	}
	return &stampingExporter{next: exp, res: res}, nil
}

// Resource is the resource NewExporter stamps on spans: service.name
// (OTEL_SERVICE_NAME, default "rollbook"), the SDK's telemetry.sdk.*
// attributes and OTEL_RESOURCE_ATTRIBUTES.
func Resource(ctx context.Context) (*resource.Resource, error) {
	// Later options win: the environment overrides the default name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return res, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// exportBatch bounds the spans of one export request, keeping each well
// under collectors' default 4 MiB request limit.
const exportBatch = 512

// Export sends spans through exp in batches. A nil exp (tracing off) sends
// nothing.
func Export(ctx context.Context, exp sdktrace.SpanExporter, spans []sdktrace.ReadOnlySpan) error {
	if exp == nil {
		return nil
	}
	for len(spans) > 0 {
		n := min(len(spans), exportBatch)
		if err := exp.ExportSpans(ctx, spans[:n]); err != nil {
			return fmt.Errorf("tracing: export %d spans: %w", n, err)
		}
		spans = spans[n:]
	}
	return nil
}

// stampingExporter gives spans without a resource the exporter's.
type stampingExporter struct {
	next sdktrace.SpanExporter
	res  *resource.Resource
}

func (e *stampingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		if s.Resource().Len() > 0 {
			out[i] = s
			continue
		}
		stub := tracetest.SpanStubFromReadOnlySpan(s)
		stub.Resource = e.res
		out[i] = stub.Snapshot()
	}
	return e.next.ExportSpans(ctx, out)
}

func (e *stampingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }
