package tracefile

import (
	"encoding/hex"
	"fmt"
	"io"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	pb "google.golang.org/protobuf/proto"
)

var (
	protoIn  ptrace.ProtoUnmarshaler
	protoOut ptrace.ProtoMarshaler
	jsonIn   ptrace.JSONUnmarshaler
	jsonOut  ptrace.JSONMarshaler
)

// Encode renders a request as OTLP protobuf, the trace file's record format.
func Encode(req *coltracepb.ExportTraceServiceRequest) ([]byte, error) {
	b, err := pb.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	return b, nil
}

// Decode parses one OTLP protobuf ExportTraceServiceRequest.
func Decode(b []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := pb.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("decode spans: %w", err)
	}
	return req, nil
}

// MarshalJSON renders one request in the OTLP JSON encoding (hex ids, lowerCamelCase names) on
// one line, as the Collector's file exporter writes it.
func MarshalJSON(req *coltracepb.ExportTraceServiceRequest) ([]byte, error) {
	b, err := Encode(req)
	if err != nil {
		return nil, err
	}
	td, err := protoIn.UnmarshalTraces(b)
	if err != nil {
		return nil, fmt.Errorf("decode spans: %w", err)
	}
	out, err := jsonOut.MarshalTraces(td)
	if err != nil {
		return nil, fmt.Errorf("encode spans as JSON: %w", err)
	}
	return out, nil
}

// ProtoOfJSON parses one line in the OTLP JSON encoding into OTLP protobuf.
func ProtoOfJSON(line []byte) ([]byte, error) {
	td, err := jsonIn.UnmarshalTraces(line)
	if err != nil {
		return nil, fmt.Errorf("parse spans: %w", err)
	}
	b, err := protoOut.MarshalTraces(td)
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	return b, nil
}

// traces renders merged spans as OTLP, grouped by resource and scope in the order their first
// span appears: what a collector receives for them.
func traces(spans []*Span) ptrace.Traces {
	td := ptrace.NewTraces()
	type group struct {
		res    Attrs
		rs     ptrace.ResourceSpans
		scopes map[*Scope]ptrace.ScopeSpans
	}
	var groups []*group
	find := func(s *Span) ptrace.ScopeSpans {
		var g *group
		for _, x := range groups {
			if sameAttrs(x.res, s.Resource) {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{res: s.Resource, rs: td.ResourceSpans().AppendEmpty(), scopes: map[*Scope]ptrace.ScopeSpans{}}
			putAttrs(g.rs.Resource().Attributes(), s.Resource)
			groups = append(groups, g)
		}
		ss, ok := g.scopes[s.Scope]
		if !ok {
			ss = g.rs.ScopeSpans().AppendEmpty()
			if s.Scope != nil {
				ss.Scope().SetName(s.Scope.Name)
				ss.Scope().SetVersion(s.Scope.Version)
			}
			g.scopes[s.Scope] = ss
		}
		return ss
	}
	for _, s := range spans {
		putSpan(find(s).Spans().AppendEmpty(), s)
	}
	return td
}

// ResourceSpans renders merged spans as OTLP messages (see traces).
func ResourceSpans(spans []*Span) ([]*tracepb.ResourceSpans, error) {
	b, err := protoOut.MarshalTraces(traces(spans))
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	req, err := Decode(b)
	if err != nil {
		return nil, err
	}
	return req.ResourceSpans, nil
}

// WriteJSON writes merged spans in the OTLP JSON encoding, one ExportTraceServiceRequest per line
// of at most maxLine bytes where it can (a single span longer than that gets a line of its own):
// the lines the Collector's otlpjsonfile receiver reads, whose file reader splits lines longer
// than its max_log_size (1 MiB by default).
func WriteJSON(w io.Writer, spans []*Span, maxLine int) error {
	n := 64
	for len(spans) > 0 {
		n = min(n, len(spans))
		b, err := jsonOut.MarshalTraces(traces(spans[:n]))
		if err != nil {
			return fmt.Errorf("encode spans as JSON: %w", err)
		}
		if len(b) > maxLine && n > 1 {
			n /= 2
			continue
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
		spans = spans[n:]
		if len(b) < maxLine/4 {
			n *= 2
		}
	}
	return nil
}

// sameAttrs reports whether two resources are the same: the decoder shares equal resources, so
// the slices' identity answers nearly always, the contents otherwise.
func sameAttrs(a, b Attrs) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		v, ok := b.Get(a[i].Key)
		if !ok || fmt.Sprint(v) != fmt.Sprint(a[i].Value) {
			return false
		}
	}
	return true
}

func putSpan(out ptrace.Span, s *Span) {
	out.SetTraceID(traceIDOf(s.TraceID))
	out.SetSpanID(spanIDOf(s.SpanID))
	out.SetParentSpanID(spanIDOf(s.ParentID))
	out.SetName(s.Name)
	out.SetKind(ptrace.SpanKind(s.Kind))
	out.SetStartTimestamp(pcommon.Timestamp(s.Start))
	out.SetEndTimestamp(pcommon.Timestamp(s.End))
	putAttrs(out.Attributes(), s.Attrs)
	for _, e := range s.Events {
		oe := out.Events().AppendEmpty()
		oe.SetTimestamp(pcommon.Timestamp(e.Time))
		oe.SetName(e.Name)
		putAttrs(oe.Attributes(), e.Attrs)
	}
	for _, l := range s.Links {
		ol := out.Links().AppendEmpty()
		ol.SetTraceID(traceIDOf(l.TraceID))
		ol.SetSpanID(spanIDOf(l.SpanID))
		putAttrs(ol.Attributes(), l.Attrs)
	}
	out.Status().SetCode(ptrace.StatusCode(s.StatusCode))
	out.Status().SetMessage(s.StatusMsg)
}

func putAttrs(m pcommon.Map, a Attrs) {
	m.EnsureCapacity(len(a))
	for _, kv := range a {
		putValue(m.PutEmpty(kv.Key), kv.Value)
	}
}

func putValue(v pcommon.Value, x any) {
	switch x := x.(type) {
	case string:
		v.SetStr(x)
	case int64:
		v.SetInt(x)
	case float64:
		v.SetDouble(x)
	case bool:
		v.SetBool(x)
	case []any:
		s := v.SetEmptySlice()
		for _, e := range x {
			putValue(s.AppendEmpty(), e)
		}
	case map[string]any:
		m := v.SetEmptyMap()
		for k, e := range x {
			putValue(m.PutEmpty(k), e)
		}
	}
}

func traceIDOf(s string) pcommon.TraceID {
	var id pcommon.TraceID
	_, _ = hex.Decode(id[:], []byte(s))
	return id
}

func spanIDOf(s string) pcommon.SpanID {
	var id pcommon.SpanID
	_, _ = hex.Decode(id[:], []byte(s))
	return id
}
