package otlpexport

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
)

var protocols = []string{ProtocolHTTPProtobuf, ProtocolGRPC}

// testLogger returns a logger writing into the returned buffer.
func testLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestForwarderDeliversCompleteSpans(t *testing.T) {
	tests := []struct {
		name        string
		envService  string
		optService  string
		wantService string
	}{
		{name: "default", wantService: "lockprobe"},
		{name: "option", optService: "mine", wantService: "mine"},
		{name: "env wins", envService: "fromenv", optService: "mine", wantService: "fromenv"},
	}
	for _, proto := range protocols {
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				t.Setenv(envServiceName, tt.envService)
				rc := &receiver{}
				ep := rc.start(t, proto)
				f, err := New(t.Context(), Options{Endpoint: ep, ServiceName: tt.optService})
				if err != nil {
					t.Fatal(err)
				}
				batch := resourceSpans("locker-0",
					span(1, 1, "lock.acquire", 10, 20),
					span(1, 2, "lock.hold", 20, 0), // partial: must not be sent
				)
				f.Enqueue(batch)
				f.Enqueue(resourceSpans("", span(1, 2, "lock.hold", 20, 30)))
				f.Enqueue(nil)
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				st, err := f.Close(ctx)
				if err != nil {
					t.Fatalf("Close: %v", err)
				}
				want := Stats{Exported: 2, Partial: 1}
				if st != want {
					t.Errorf("stats = %+v, want %+v", st, want)
				}
				got := rc.spans()
				if len(got) != 2 {
					t.Fatalf("received %v, want lock.acquire and lock.hold", got)
				}
				for name, svc := range got {
					if svc != tt.wantService {
						t.Errorf("span %s has service.name %q, want %q", name, svc, tt.wantService)
					}
				}
				// The caller's batch is untouched: still partial, still its
				// own service name.
				if batch[0].ScopeSpans[0].Spans[1].EndTimeUnixNano != 0 ||
					attr(batch[0].Resource.Attributes, semconv.ServiceName) != "locker-0" {
					t.Errorf("Enqueue changed the caller's batch")
				}
			})
		}
	}
}

// TestForwarderFoldsPartialRecords checks that a thin final record, as the
// controller writes for a span still open at the end of a run, goes out with
// what the span's partial records said.
func TestForwarderFoldsPartialRecords(t *testing.T) {
	rc := &receiver{}
	f, err := New(t.Context(), Options{Endpoint: rc.startHTTP(t)})
	if err != nil {
		t.Fatal(err)
	}
	started := span(1, 1, "lock.acquire", 10, 0)
	started.Attributes = []*commonpb.KeyValue{strAttr("lock.kind", "flock"), strAttr(semconv.LockOutcome, "waiting")}
	f.Enqueue(resourceSpans("", started))
	conflict := span(1, 1, "lock.acquire", 10, 0)
	conflict.Events = []*tracepb.Span_Event{{TimeUnixNano: 15, Name: "lock.conflict"}}
	f.Enqueue(resourceSpans("", conflict))
	closed := span(1, 1, "", 10, 99)
	closed.Attributes = []*commonpb.KeyValue{strAttr(semconv.LockOutcome, "blocked")}
	f.Enqueue(resourceSpans("", closed))
	st, err := f.Close(t.Context())
	if err != nil || st.Exported != 1 || st.Partial != 2 {
		t.Fatalf("Close = %+v, %v", st, err)
	}
	reqs := rc.all()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	s := reqs[0].GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
	if s.GetName() != "lock.acquire" || s.GetEndTimeUnixNano() != 99 || attr(s.GetAttributes(), "lock.kind") != "flock" ||
		attr(s.GetAttributes(), semconv.LockOutcome) != "blocked" || len(s.GetEvents()) != 1 {
		t.Errorf("exported %v", s)
	}
}

func TestForwarderClosedPort(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			log, buf := testLogger()
			f, err := New(t.Context(), Options{Endpoint: closedEndpoint(t, proto), Protocol: proto,
				Logger: log, BatchSpans: 4, UploadTimeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			f.Enqueue(manySpans(10))
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			st, err := f.Close(ctx)
			if err == nil {
				t.Fatal("Close reported success with nothing listening")
			}
			if st.Exported != 0 || st.NotExported() != 10 {
				t.Errorf("stats = %+v, want 0 exported and 10 not exported", st)
			}
			if n := strings.Count(buf.String(), "upload to collector failed"); n > 1 {
				t.Errorf("warned %d times, want at most once:\n%s", n, buf)
			}
		})
	}
}

func TestForwarderSlowCollector(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for Close's deadline")
	}
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			rc := &receiver{delay: 10 * time.Second}
			ep := rc.start(t, proto)
			// The upload timeout is longer than Close's deadline, so it
			// is Close that has to cut the upload short.
			f, err := New(t.Context(), Options{Endpoint: ep, QueueSpans: 100, BatchSpans: 10,
				BatchDelay: time.Millisecond, UploadTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			// Many more spans than the queue holds, while the collector
			// sits on the first upload: every call must return at once.
			const batches, per = 200, 5
			for range batches {
				f.Enqueue(manySpans(per))
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			began := time.Now()
			st, err := f.Close(ctx)
			t.Logf("Close took %v: %+v", time.Since(began), st)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Close error = %v, want deadline exceeded", err)
			}
			if st.Exported != 0 || st.NotExported() != batches*per || st.Dropped == 0 {
				t.Errorf("stats = %+v, want none exported, %d not exported, some dropped", st, batches*per)
			}
		})
	}
}

func TestForwarderRejected(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			rc := &receiver{status: http.StatusBadRequest}
			ep := rc.start(t, proto)
			log, buf := testLogger()
			f, err := New(t.Context(), Options{Endpoint: ep, Logger: log, BatchSpans: 3})
			if err != nil {
				t.Fatal(err)
			}
			f.Enqueue(manySpans(9))
			st, err := f.Close(t.Context())
			if err == nil {
				t.Error("Close reported success although the collector rejected everything")
			}
			if want := (Stats{Failed: 9}); st != want {
				t.Errorf("stats = %+v, want %+v", st, want)
			}
			if n := strings.Count(buf.String(), "upload to collector failed"); n != 1 {
				t.Errorf("warned %d times, want once:\n%s", n, buf)
			}
		})
	}
}

func TestNilForwarder(t *testing.T) {
	var f *Forwarder
	f.Enqueue([]*tracepb.ResourceSpans{{}})
	if st, err := f.Close(t.Context()); err != nil || st != (Stats{}) {
		t.Errorf("nil Close = %+v, %v", st, err)
	}
}

func TestForwarderCloseTwice(t *testing.T) {
	rc := &receiver{}
	f, err := New(t.Context(), Options{Endpoint: rc.startHTTP(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Close(t.Context()); err == nil {
		t.Error("second Close reported no error")
	}
	f.Enqueue(manySpans(1)) // after Close: dropped, no panic
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		env      map[string]string
		want     bool
	}{
		{name: "nothing", want: false},
		{name: "flag", endpoint: "http://127.0.0.1:4318", want: true},
		{name: "env", env: map[string]string{envEndpoint: "http://127.0.0.1:4318"}, want: true},
		{name: "traces env", env: map[string]string{envTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, want: true},
		{name: "env but none", env: map[string]string{envEndpoint: "http://x:4318", envTracesExporter: "none"}, want: false},
		{name: "flag beats none", endpoint: "127.0.0.1:4318", env: map[string]string{envTracesExporter: "none"}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{envEndpoint, envTracesEndpoint, envTracesExporter} {
				t.Setenv(k, tt.env[k])
			}
			if got := Enabled(Options{Endpoint: tt.endpoint}); got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolveTarget(t *testing.T) {
	tests := []struct {
		endpoint, protocol, env string
		want                    target
		wantErr                 bool
	}{
		{endpoint: "http://127.0.0.1:4318", want: target{protocol: ProtocolHTTPProtobuf, endpointURL: "http://127.0.0.1:4318/v1/traces"}},
		{endpoint: "https://c:4318/custom", want: target{protocol: ProtocolHTTPProtobuf, endpointURL: "https://c:4318/custom"}},
		{endpoint: "grpc://127.0.0.1:4317", want: target{protocol: ProtocolGRPC, endpointHost: "127.0.0.1:4317"}},
		{endpoint: "grpc://127.0.0.1:4317", protocol: ProtocolHTTPProtobuf, want: target{protocol: ProtocolGRPC, endpointHost: "127.0.0.1:4317"}},
		{endpoint: "127.0.0.1:4317", protocol: ProtocolGRPC, want: target{protocol: ProtocolGRPC, endpointHost: "127.0.0.1:4317"}},
		{endpoint: "127.0.0.1:4317", env: ProtocolGRPC, want: target{protocol: ProtocolGRPC, endpointHost: "127.0.0.1:4317"}},
		{endpoint: "127.0.0.1:4318", want: target{protocol: ProtocolHTTPProtobuf, endpointHost: "127.0.0.1:4318"}},
		{endpoint: "", env: ProtocolGRPC, want: target{protocol: ProtocolGRPC}},
		{endpoint: "ftp://x:1", wantErr: true},
		{endpoint: "http://", wantErr: true},
		{endpoint: "justahost", wantErr: true},
		{endpoint: "127.0.0.1:4318", protocol: "carrier-pigeon", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint+"|"+tt.protocol+"|"+tt.env, func(t *testing.T) {
			t.Setenv(envProtocol, tt.env)
			t.Setenv(envTracesProtocol, "")
			got, err := resolveTarget(Options{Endpoint: tt.endpoint, Protocol: tt.protocol})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			got.desc = ""
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestForwarderFromEnvironment checks that an empty Endpoint leaves the
// endpoint to the OTLP client's own reading of the environment.
func TestForwarderFromEnvironment(t *testing.T) {
	rc := &receiver{}
	base := rc.startHTTP(t)
	t.Setenv(envTracesEndpoint, "")
	t.Setenv(envEndpoint, base)
	t.Setenv(envProtocol, ProtocolHTTPProtobuf)
	if !Enabled(Options{}) {
		t.Fatal("Enabled = false with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	f, err := New(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Enqueue(manySpans(3))
	if st, err := f.Close(t.Context()); err != nil || st.Exported != 3 {
		t.Fatalf("Close = %+v, %v", st, err)
	}
}
