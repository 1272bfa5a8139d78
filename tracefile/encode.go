package tracefile

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"strconv"
	"unicode/utf8"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// appendRequest renders a request in the OTLP JSON encoding: lowerCamelCase names, hex ids,
// 64-bit integers as decimal strings, enums as integers (as the OTLP specification asks), zero
// values left out. The controller writes every span it receives this way; protojson plus the id
// rewrite cost about 100 µs a record, which capped the trace file at a few thousand spans a
// second. A test checks the output against protojson's reading of it.
func appendRequest(b []byte, req *coltracepb.ExportTraceServiceRequest) []byte {
	b = append(b, `{"resourceSpans":[`...)
	for i, rs := range req.GetResourceSpans() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendResourceSpans(b, rs)
	}
	return append(b, "]}"...)
}

type fields struct {
	b     []byte
	first bool
}

func (f *fields) key(k string) {
	if !f.first {
		f.b = append(f.b, ',')
	}
	f.first = false
	f.b = append(f.b, '"')
	f.b = append(f.b, k...)
	f.b = append(f.b, '"', ':')
}

func openObject(b []byte) fields { return fields{b: append(b, '{'), first: true} }

func (f *fields) close() []byte { return append(f.b, '}') }

func appendResourceSpans(b []byte, rs *tracepb.ResourceSpans) []byte {
	f := openObject(b)
	if rs.Resource != nil {
		f.key("resource")
		f.b = appendResource(f.b, rs.Resource)
	}
	if len(rs.ScopeSpans) > 0 {
		f.key("scopeSpans")
		f.b = append(f.b, '[')
		for i, ss := range rs.ScopeSpans {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			f.b = appendScopeSpans(f.b, ss)
		}
		f.b = append(f.b, ']')
	}
	if rs.SchemaUrl != "" {
		f.key("schemaUrl")
		f.b = appendString(f.b, rs.SchemaUrl)
	}
	return f.close()
}

func appendResource(b []byte, r *resourcepb.Resource) []byte {
	f := openObject(b)
	if len(r.Attributes) > 0 {
		f.key("attributes")
		f.b = appendKeyValues(f.b, r.Attributes)
	}
	if r.DroppedAttributesCount != 0 {
		f.key("droppedAttributesCount")
		f.b = strconv.AppendUint(f.b, uint64(r.DroppedAttributesCount), 10)
	}
	return f.close()
}

func appendScopeSpans(b []byte, ss *tracepb.ScopeSpans) []byte {
	f := openObject(b)
	if sc := ss.Scope; sc != nil {
		f.key("scope")
		g := openObject(f.b)
		if sc.Name != "" {
			g.key("name")
			g.b = appendString(g.b, sc.Name)
		}
		if sc.Version != "" {
			g.key("version")
			g.b = appendString(g.b, sc.Version)
		}
		if len(sc.Attributes) > 0 {
			g.key("attributes")
			g.b = appendKeyValues(g.b, sc.Attributes)
		}
		if sc.DroppedAttributesCount != 0 {
			g.key("droppedAttributesCount")
			g.b = strconv.AppendUint(g.b, uint64(sc.DroppedAttributesCount), 10)
		}
		f.b = g.close()
	}
	if len(ss.Spans) > 0 {
		f.key("spans")
		f.b = append(f.b, '[')
		for i, s := range ss.Spans {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			f.b = appendSpan(f.b, s)
		}
		f.b = append(f.b, ']')
	}
	if ss.SchemaUrl != "" {
		f.key("schemaUrl")
		f.b = appendString(f.b, ss.SchemaUrl)
	}
	return f.close()
}

func appendSpan(b []byte, s *tracepb.Span) []byte {
	f := openObject(b)
	if len(s.TraceId) > 0 {
		f.key("traceId")
		f.b = appendHex(f.b, s.TraceId)
	}
	if len(s.SpanId) > 0 {
		f.key("spanId")
		f.b = appendHex(f.b, s.SpanId)
	}
	if s.TraceState != "" {
		f.key("traceState")
		f.b = appendString(f.b, s.TraceState)
	}
	if len(s.ParentSpanId) > 0 {
		f.key("parentSpanId")
		f.b = appendHex(f.b, s.ParentSpanId)
	}
	if s.Flags != 0 {
		f.key("flags")
		f.b = strconv.AppendUint(f.b, uint64(s.Flags), 10)
	}
	if s.Name != "" {
		f.key("name")
		f.b = appendString(f.b, s.Name)
	}
	if s.Kind != 0 {
		f.key("kind")
		f.b = strconv.AppendInt(f.b, int64(s.Kind), 10)
	}
	if s.StartTimeUnixNano != 0 {
		f.key("startTimeUnixNano")
		f.b = appendQuotedUint(f.b, s.StartTimeUnixNano)
	}
	if s.EndTimeUnixNano != 0 {
		f.key("endTimeUnixNano")
		f.b = appendQuotedUint(f.b, s.EndTimeUnixNano)
	}
	if len(s.Attributes) > 0 {
		f.key("attributes")
		f.b = appendKeyValues(f.b, s.Attributes)
	}
	if s.DroppedAttributesCount != 0 {
		f.key("droppedAttributesCount")
		f.b = strconv.AppendUint(f.b, uint64(s.DroppedAttributesCount), 10)
	}
	if len(s.Events) > 0 {
		f.key("events")
		f.b = append(f.b, '[')
		for i, e := range s.Events {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			g := openObject(f.b)
			if e.TimeUnixNano != 0 {
				g.key("timeUnixNano")
				g.b = appendQuotedUint(g.b, e.TimeUnixNano)
			}
			if e.Name != "" {
				g.key("name")
				g.b = appendString(g.b, e.Name)
			}
			if len(e.Attributes) > 0 {
				g.key("attributes")
				g.b = appendKeyValues(g.b, e.Attributes)
			}
			if e.DroppedAttributesCount != 0 {
				g.key("droppedAttributesCount")
				g.b = strconv.AppendUint(g.b, uint64(e.DroppedAttributesCount), 10)
			}
			f.b = g.close()
		}
		f.b = append(f.b, ']')
	}
	if s.DroppedEventsCount != 0 {
		f.key("droppedEventsCount")
		f.b = strconv.AppendUint(f.b, uint64(s.DroppedEventsCount), 10)
	}
	if len(s.Links) > 0 {
		f.key("links")
		f.b = append(f.b, '[')
		for i, l := range s.Links {
			if i > 0 {
				f.b = append(f.b, ',')
			}
			g := openObject(f.b)
			if len(l.TraceId) > 0 {
				g.key("traceId")
				g.b = appendHex(g.b, l.TraceId)
			}
			if len(l.SpanId) > 0 {
				g.key("spanId")
				g.b = appendHex(g.b, l.SpanId)
			}
			if l.TraceState != "" {
				g.key("traceState")
				g.b = appendString(g.b, l.TraceState)
			}
			if len(l.Attributes) > 0 {
				g.key("attributes")
				g.b = appendKeyValues(g.b, l.Attributes)
			}
			if l.DroppedAttributesCount != 0 {
				g.key("droppedAttributesCount")
				g.b = strconv.AppendUint(g.b, uint64(l.DroppedAttributesCount), 10)
			}
			if l.Flags != 0 {
				g.key("flags")
				g.b = strconv.AppendUint(g.b, uint64(l.Flags), 10)
			}
			f.b = g.close()
		}
		f.b = append(f.b, ']')
	}
	if s.DroppedLinksCount != 0 {
		f.key("droppedLinksCount")
		f.b = strconv.AppendUint(f.b, uint64(s.DroppedLinksCount), 10)
	}
	if st := s.Status; st != nil && (st.Message != "" || st.Code != 0) {
		f.key("status")
		g := openObject(f.b)
		if st.Message != "" {
			g.key("message")
			g.b = appendString(g.b, st.Message)
		}
		if st.Code != 0 {
			g.key("code")
			g.b = strconv.AppendInt(g.b, int64(st.Code), 10)
		}
		f.b = g.close()
	}
	return f.close()
}

func appendKeyValues(b []byte, kvs []*commonpb.KeyValue) []byte {
	b = append(b, '[')
	for i, kv := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		f := openObject(b)
		f.key("key")
		f.b = appendString(f.b, kv.Key)
		if kv.Value != nil {
			f.key("value")
			f.b = appendAnyValue(f.b, kv.Value)
		}
		b = f.close()
	}
	return append(b, ']')
}

func appendAnyValue(b []byte, v *commonpb.AnyValue) []byte {
	f := openObject(b)
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		f.key("stringValue")
		f.b = appendString(f.b, x.StringValue)
	case *commonpb.AnyValue_IntValue:
		f.key("intValue")
		f.b = append(f.b, '"')
		f.b = strconv.AppendInt(f.b, x.IntValue, 10)
		f.b = append(f.b, '"')
	case *commonpb.AnyValue_DoubleValue:
		f.key("doubleValue")
		f.b = appendFloat(f.b, x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		f.key("boolValue")
		f.b = strconv.AppendBool(f.b, x.BoolValue)
	case *commonpb.AnyValue_BytesValue:
		f.key("bytesValue")
		f.b = append(f.b, '"')
		f.b = base64.StdEncoding.AppendEncode(f.b, x.BytesValue)
		f.b = append(f.b, '"')
	case *commonpb.AnyValue_ArrayValue:
		f.key("arrayValue")
		g := openObject(f.b)
		if vals := x.ArrayValue.GetValues(); len(vals) > 0 {
			g.key("values")
			g.b = append(g.b, '[')
			for i, e := range vals {
				if i > 0 {
					g.b = append(g.b, ',')
				}
				g.b = appendAnyValue(g.b, e)
			}
			g.b = append(g.b, ']')
		}
		f.b = g.close()
	case *commonpb.AnyValue_KvlistValue:
		f.key("kvlistValue")
		g := openObject(f.b)
		if vals := x.KvlistValue.GetValues(); len(vals) > 0 {
			g.key("values")
			g.b = appendKeyValues(g.b, vals)
		}
		f.b = g.close()
	}
	return f.close()
}

// appendFloat writes a double as protojson does: non-finite values as strings.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func appendQuotedUint(b []byte, v uint64) []byte {
	b = append(b, '"')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '"')
}

func appendHex(b []byte, id []byte) []byte {
	b = append(b, '"')
	b = hex.AppendEncode(b, id)
	return append(b, '"')
}

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD (protobuf strings must
// be valid UTF-8; a reader would reject the line otherwise).
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
