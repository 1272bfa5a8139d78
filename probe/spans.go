package probe

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// wireClient is the otlptrace.Client of the locker: the OTel SDK transforms ended spans into
// OTLP protobuf and UploadTraces hands them to the outbox. Partial records of live spans, which
// the SDK does not export, are rendered into the same OTLP shape by partialRecord below.
type wireClient struct {
	out *outbox
}

func (c *wireClient) Start(context.Context) error { return nil }
func (c *wireClient) Stop(context.Context) error  { return nil }
func (c *wireClient) UploadTraces(ctx context.Context, rss []*tracepb.ResourceSpans) error {
	return c.out.put(ctx, &proto.Message{Kind: proto.KindSpans, Spans: &coltracepb.ExportTraceServiceRequest{ResourceSpans: rss}})
}

// startNotifier is a SpanProcessor that tells the controller when a span starts: the SDK only
// exports ended spans, and a waiter that never returns must be visible. It sends a partial
// record (end time 0) of the span as it is at its start.
type startNotifier struct {
	out *outbox
}

func (n *startNotifier) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	n.out.putSpan(s, nil)
}
func (n *startNotifier) OnEnd(sdktrace.ReadOnlySpan)      {}
func (n *startNotifier) Shutdown(context.Context) error   { return nil }
func (n *startNotifier) ForceFlush(context.Context) error { return nil }

// partialRecord renders a live span as an OTLP request with end time 0. With events == nil it
// carries the span's attributes and events so far; otherwise only the given events (a watcher's
// update), which the trace reader unites with the rest.
func partialRecord(s sdktrace.ReadOnlySpan, events []sdktrace.Event) *proto.Message {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	span := &tracepb.Span{
		TraceId:           tid[:],
		SpanId:            sid[:],
		Name:              s.Name(),
		Kind:              tracepb.Span_SPAN_KIND_INTERNAL,
		StartTimeUnixNano: uint64(s.StartTime().UnixNano()),
	}
	if p := s.Parent(); p.IsValid() {
		psid := p.SpanID()
		span.ParentSpanId = psid[:]
	}
	if events == nil {
		span.Attributes = keyValues(s.Attributes())
		events = s.Events()
	}
	for _, e := range events {
		span.Events = append(span.Events, &tracepb.Span_Event{
			TimeUnixNano: uint64(e.Time.UnixNano()),
			Name:         e.Name,
			Attributes:   keyValues(e.Attributes),
		})
	}
	var res *resourcepb.Resource
	if r := s.Resource(); r != nil {
		res = &resourcepb.Resource{Attributes: keyValues(r.Attributes())}
	}
	scope := s.InstrumentationScope()
	rs := &tracepb.ResourceSpans{
		Resource: res,
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: scope.Name, Version: scope.Version},
			Spans: []*tracepb.Span{span},
		}},
	}
	return &proto.Message{Kind: proto.KindSpans, Spans: &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{rs}}}
}

func keyValues(kvs []attribute.KeyValue) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: anyValue(kv.Value)})
	}
	return out
}

func anyValue(v attribute.Value) *commonpb.AnyValue {
	switch v.Type() {
	case attribute.BOOL:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.INT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.FLOAT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	case attribute.STRINGSLICE:
		var arr []*commonpb.AnyValue
		for _, s := range v.AsStringSlice() {
			arr = append(arr, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}})
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: arr}}}
	case attribute.INT64SLICE:
		var arr []*commonpb.AnyValue
		for _, i := range v.AsInt64Slice() {
			arr = append(arr, &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: i}})
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: arr}}}
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.String()}}
}

// ownerAttrs are the attributes of a conflict owner, shared by conflict events, getlk spans and
// observer events.
func ownerAttrs(o owner) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Int(semconv.LockOwnerPID, o.pid),
		attribute.String(semconv.LockOwnerMode, o.mode.String()),
		attribute.Int64(semconv.LockOwnerStart, o.start),
		attribute.Int64(semconv.LockOwnerLen, o.len),
		attribute.Int(semconv.LockOwnerLockerID, o.lockerID),
		attribute.String(semconv.LockOwnerClass, o.class.String()),
		attribute.String(semconv.LockOwnerSource, o.source),
		attribute.String(semconv.Node, o.node),
	}
}
