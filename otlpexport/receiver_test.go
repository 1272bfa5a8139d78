package otlpexport

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lockprobe/lockprobe/semconv"
)

// receiver is a real OTLP receiver on loopback that records what it is sent.
// status (HTTP status, 0 = 200) and delay shape its answers.
type receiver struct {
	status int
	delay  time.Duration

	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
}

func (rc *receiver) record(req *coltracepb.ExportTraceServiceRequest) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests = append(rc.requests, req)
}

// all returns the requests received so far.
func (rc *receiver) all() []*coltracepb.ExportTraceServiceRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*coltracepb.ExportTraceServiceRequest(nil), rc.requests...)
}

// spans returns every span received, with the service.name of its resource.
func (rc *receiver) spans() map[string]string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]string{}
	for _, req := range rc.requests {
		for _, r := range req.GetResourceSpans() {
			svc := attr(r.GetResource().GetAttributes(), semconv.ServiceName)
			for _, ss := range r.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out[s.GetName()] = svc
				}
			}
		}
	}
	return out
}

// wait sleeps for the receiver's delay, or until the client gives up.
func (rc *receiver) wait(ctx context.Context) {
	if rc.delay == 0 {
		return
	}
	select {
	case <-time.After(rc.delay):
	case <-ctx.Done():
	}
}

// startHTTP serves OTLP/HTTP (protobuf) on 127.0.0.1 and returns its base URL.
func (rc *receiver) startHTTP(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// After the body is read, so that the server notices a client
		// that hangs up and cancels r.Context().
		rc.wait(r.Context())
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if rc.status != 0 && rc.status != http.StatusOK {
			http.Error(w, "rejected by test receiver", rc.status)
			return
		}
		rc.record(req)
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// grpcService is the receiver as a gRPC TraceService.
type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	rc *receiver
}

func (g grpcService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.rc.wait(ctx)
	if g.rc.status != 0 && g.rc.status != http.StatusOK {
		return nil, status.Error(codes.InvalidArgument, "rejected by test receiver")
	}
	g.rc.record(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// startGRPC serves OTLP/gRPC on 127.0.0.1 and returns a grpc:// endpoint.
func (rc *receiver) startGRPC(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcService{rc: rc})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return "grpc://" + lis.Addr().String()
}

// start serves the receiver over protocol and returns the endpoint.
func (rc *receiver) start(t *testing.T, protocol string) string {
	if protocol == ProtocolGRPC {
		return rc.startGRPC(t)
	}
	return rc.startHTTP(t)
}

// closedEndpoint returns an endpoint on 127.0.0.1 where nothing listens.
func closedEndpoint(t *testing.T, protocol string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	if protocol == ProtocolGRPC {
		return "grpc://" + addr
	}
	return "http://" + addr
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func strAttr(key, value string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: key, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: value}}}
}

// span makes a span; end == 0 makes it partial.
func span(traceID, spanID byte, name string, start, end uint64) *tracepb.Span {
	tid := make([]byte, 16)
	tid[15] = traceID
	sid := make([]byte, 8)
	sid[7] = spanID
	return &tracepb.Span{TraceId: tid, SpanId: sid, Name: name, StartTimeUnixNano: start, EndTimeUnixNano: end,
		Kind: tracepb.Span_SPAN_KIND_INTERNAL}
}

// resourceSpans wraps spans in one resource, as a locker would send them.
func resourceSpans(service string, spans ...*tracepb.Span) []*tracepb.ResourceSpans {
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("host.name", "node1")}}
	if service != "" {
		res.Attributes = append(res.Attributes, strAttr(semconv.ServiceName, service))
	}
	return []*tracepb.ResourceSpans{{
		Resource: res,
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "lockprobe/probe"},
			Spans: spans,
		}},
	}}
}

// manySpans makes n complete spans named s0..s(n-1) in one batch.
func manySpans(n int) []*tracepb.ResourceSpans {
	spans := make([]*tracepb.Span, n)
	for i := range spans {
		spans[i] = span(1, byte(i+1), fmt.Sprintf("s%d", i), 100, 200)
	}
	return resourceSpans("", spans...)
}
