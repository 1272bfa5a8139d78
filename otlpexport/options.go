package otlpexport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
)

// Protocol names, as OTEL_EXPORTER_OTLP_PROTOCOL spells them.
const (
	ProtocolHTTPProtobuf = "http/protobuf"
	ProtocolHTTPJSON     = "http/json"
	ProtocolGRPC         = "grpc"
)

// DefaultServiceName is the service.name given to every exported resource
// unless Options.ServiceName or OTEL_SERVICE_NAME says otherwise.
const DefaultServiceName = "lockprobe"

// Defaults for the zero values of Options.
const (
	DefaultQueueSpans    = 16384
	DefaultBatchSpans    = 512
	DefaultBatchDelay    = 200 * time.Millisecond
	DefaultUploadTimeout = 5 * time.Second
)

// Standard OpenTelemetry environment variables that this package consults. The
// endpoint, header, TLS and timeout variables are read by the otlptracehttp and
// otlptracegrpc clients themselves; only what chooses between those two
// clients, and the service name, is read here.
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
	envServiceName    = "OTEL_SERVICE_NAME"
)

// Options configures a Forwarder or ExportFile. The zero value takes
// everything from the standard OTEL_* environment.
type Options struct {
	// Endpoint is optional. Accepted forms: "http://host:4318" or
	// "https://host:4318" (OTLP/HTTP; a URL without a path gets /v1/traces,
	// one with a path is used as is), "grpc://host:4317" (OTLP/gRPC without
	// TLS), or a bare "host:port" (plain text, Protocol decides). Empty means
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, read
	// by the OTLP clients themselves.
	Endpoint string
	// Protocol is optional: "http/protobuf" (default), "http/json" or
	// "grpc". Empty means OTEL_EXPORTER_OTLP_TRACES_PROTOCOL /
	// OTEL_EXPORTER_OTLP_PROTOCOL. A grpc:// endpoint always means gRPC.
	Protocol string
	// Headers are optional extra request headers (gRPC metadata), added to
	// OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string
	// ServiceName is optional; default "lockprobe". OTEL_SERVICE_NAME, when
	// set, wins. It becomes the service.name of every exported resource.
	ServiceName string
	// Logger is optional; default slog.Default().
	Logger *slog.Logger
	// Hold is optional: names of spans whose final records a Forwarder
	// holds back until Close, folding in the records of the same span that
	// come after the final one (the verdict the CLI adds to the root span
	// once the run is over; the controller's locker.exit events). A
	// collector stores each record as a span of its own, so a record sent
	// after the final one would show up as a second span, and a partial
	// one would never be sent at all. ExportFile merges the whole file
	// first and ignores Hold.
	Hold []string

	// QueueSpans bounds the spans waiting for upload; more are dropped.
	// Optional; default DefaultQueueSpans.
	QueueSpans int
	// BatchSpans is the most spans sent in one upload. Optional; default
	// DefaultBatchSpans.
	BatchSpans int
	// BatchDelay is how long the first queued span may wait for others to
	// share its upload. Optional; default DefaultBatchDelay.
	BatchDelay time.Duration
	// UploadTimeout bounds one upload, retries included. Optional; default
	// DefaultUploadTimeout.
	UploadTimeout time.Duration
}

// Enabled reports whether opts, or the environment, names a collector at
// all. When it is false nothing is to be exported and New need not be called;
// OTEL_TRACES_EXPORTER=none disables an endpoint that comes only from the
// environment.
func Enabled(opts Options) bool {
	if opts.Endpoint != "" {
		return true
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envTracesExporter)), "none") {
		return false
	}
	return os.Getenv(envTracesEndpoint) != "" || os.Getenv(envEndpoint) != ""
}

// withDefaults fills the zero values of opts.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueSpans <= 0 {
		o.QueueSpans = DefaultQueueSpans
	}
	if o.BatchSpans <= 0 {
		o.BatchSpans = DefaultBatchSpans
	}
	if o.BatchDelay <= 0 {
		o.BatchDelay = DefaultBatchDelay
	}
	if o.UploadTimeout <= 0 {
		o.UploadTimeout = DefaultUploadTimeout
	}
	return o
}

// serviceName resolves the service.name to stamp on resources.
func (o Options) serviceName() string {
	if s := strings.TrimSpace(os.Getenv(envServiceName)); s != "" {
		return s
	}
	if o.ServiceName != "" {
		return o.ServiceName
	}
	return DefaultServiceName
}

// target is a resolved endpoint: which client, and the options that point it
// at the collector.
type target struct {
	protocol string
	// desc names the collector in logs and errors.
	desc string
	// Both empty: the client reads the endpoint from the environment.
	endpointURL  string // for WithEndpointURL (http and https schemes)
	endpointHost string // for WithEndpoint (host:port, plain text)
}

// Check says whether the endpoint and protocol (or the environment) name a collector
// lockprobe can send to, before anything is read or sent.
func Check(o Options) error {
	_, err := resolveTarget(o)
	return err
}

// resolveTarget turns Options.Endpoint and Options.Protocol (or the
// environment) into a target.
func resolveTarget(o Options) (target, error) {
	t := target{protocol: o.Protocol}
	if t.protocol == "" {
		t.protocol = os.Getenv(envTracesProtocol)
	}
	if t.protocol == "" {
		t.protocol = os.Getenv(envProtocol)
	}
	ep := strings.TrimSpace(o.Endpoint)
	switch {
	case ep == "":
		t.desc = firstNonEmpty(os.Getenv(envTracesEndpoint), os.Getenv(envEndpoint), "(OTLP default)")
	case strings.Contains(ep, "://"):
		u, err := url.Parse(ep)
		if err != nil {
			return target{}, fmt.Errorf("otlpexport: endpoint %q: %w", ep, err)
		}
		if u.Host == "" {
			return target{}, fmt.Errorf("otlpexport: endpoint %q has no host", ep)
		}
		switch strings.ToLower(u.Scheme) {
		case "grpc":
			t.protocol = ProtocolGRPC
			t.endpointHost = u.Host
		case "http", "https":
			if u.Path == "" || u.Path == "/" {
				// Like OTEL_EXPORTER_OTLP_ENDPOINT: a base URL gets the
				// signal path; the client itself would post to "/".
				u.Path = "/v1/traces"
			}
			t.endpointURL = u.String()
		default:
			return target{}, fmt.Errorf("otlpexport: endpoint %q: scheme %q is not http, https or grpc", ep, u.Scheme)
		}
		t.desc = ep
	default:
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return target{}, fmt.Errorf("otlpexport: endpoint %q is neither a URL nor host:port: %w", ep, err)
		}
		t.endpointHost = ep
		t.desc = ep
	}
	switch t.protocol {
	case "":
		t.protocol = ProtocolHTTPProtobuf
	case ProtocolHTTPProtobuf, ProtocolHTTPJSON, ProtocolGRPC:
	default:
		return target{}, fmt.Errorf("otlpexport: protocol %q is not %s, %s or %s",
			t.protocol, ProtocolHTTPProtobuf, ProtocolHTTPJSON, ProtocolGRPC)
	}
	return t, nil
}

// newClient builds the OTLP client for t. Retries are on but bounded by the
// upload timeout, so a collector that is down costs at most one timeout per
// batch.
func newClient(t target, o Options) otlptrace.Client {
	if t.protocol == ProtocolGRPC {
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithTimeout(o.UploadTimeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
				Enabled:         true,
				InitialInterval: 100 * time.Millisecond,
				MaxInterval:     time.Second,
				MaxElapsedTime:  o.UploadTimeout,
			}),
		}
		switch {
		case t.endpointURL != "":
			opts = append(opts, otlptracegrpc.WithEndpointURL(t.endpointURL))
		case t.endpointHost != "":
			opts = append(opts, otlptracegrpc.WithEndpoint(t.endpointHost), otlptracegrpc.WithInsecure())
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(o.Headers))
		}
		return otlptracegrpc.NewClient(opts...)
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithTimeout(o.UploadTimeout),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
			Enabled:         true,
			InitialInterval: 100 * time.Millisecond,
			MaxInterval:     time.Second,
			MaxElapsedTime:  o.UploadTimeout,
		}),
	}
	switch {
	case t.endpointURL != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(t.endpointURL))
	case t.endpointHost != "":
		opts = append(opts, otlptracehttp.WithEndpoint(t.endpointHost), otlptracehttp.WithInsecure())
	}
	// Only an explicit choice is passed on: otherwise the client reads the
	// protocol variables itself.
	switch o.Protocol {
	case ProtocolHTTPJSON:
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	case ProtocolHTTPProtobuf:
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
	}
	if len(o.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
	}
	return otlptracehttp.NewClient(opts...)
}

// startClient resolves opts and starts the matching client.
func startClient(ctx context.Context, o Options) (otlptrace.Client, target, error) {
	t, err := resolveTarget(o)
	if err != nil {
		return nil, target{}, err
	}
	c := newClient(t, o)
	if err := c.Start(ctx); err != nil {
		return nil, target{}, fmt.Errorf("otlpexport: start %s client for %s: %w", t.protocol, t.desc, err)
	}
	return c, t, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
