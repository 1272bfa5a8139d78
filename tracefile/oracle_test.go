package tracefile

import (
	"encoding/hex"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// pdataRecords is the reference decoding of FuzzDecodeMatchesPdata: a request decoded with the
// Collector's pdata and copied into span records field by field.
func pdataRecords(b []byte) ([]*Span, error) {
	td, err := protoIn.UnmarshalTraces(b)
	if err != nil {
		return nil, err
	}
	var out []*Span
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := pdataAttrs(rs.Resource().Attributes())
		if res == nil {
			res = Attrs{}
		}
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			scope := &Scope{Name: ss.Scope().Name(), Version: ss.Scope().Version()}
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				rec := &Span{
					TraceID: traceHex(s.TraceID()), SpanID: spanIDHex(s.SpanID()), ParentID: spanIDHex(s.ParentSpanID()),
					Name: s.Name(), Kind: int32(s.Kind()), Start: int64(s.StartTimestamp()), End: int64(s.EndTimestamp()),
					Attrs: pdataAttrs(s.Attributes()), Resource: res, Scope: scope, Records: 1,
					StatusCode: int32(s.Status().Code()), StatusMsg: s.Status().Message(),
				}
				for e := 0; e < s.Events().Len(); e++ {
					ev := s.Events().At(e)
					rec.Events = append(rec.Events, Event{Time: int64(ev.Timestamp()), Name: ev.Name(), Attrs: pdataAttrs(ev.Attributes())})
				}
				for l := 0; l < s.Links().Len(); l++ {
					ln := s.Links().At(l)
					rec.Links = append(rec.Links, Link{TraceID: traceHex(ln.TraceID()), SpanID: spanIDHex(ln.SpanID()), Attrs: pdataAttrs(ln.Attributes())})
				}
				out = append(out, rec)
			}
		}
	}
	return out, nil
}

func traceHex(id pcommon.TraceID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

func pdataAttrs(m pcommon.Map) Attrs {
	var out Attrs
	for k, v := range m.All() {
		out.Set(k, pdataValue(v))
	}
	return out
}

func pdataValue(v pcommon.Value) any {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeInt:
		return v.Int()
	case pcommon.ValueTypeDouble:
		return v.Double()
	case pcommon.ValueTypeBool:
		return v.Bool()
	case pcommon.ValueTypeBytes:
		return hex.EncodeToString(v.Bytes().AsRaw())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		out := make([]any, s.Len())
		for i := range out {
			out[i] = pdataValue(s.At(i))
		}
		return out
	case pcommon.ValueTypeMap:
		m := map[string]any{}
		for k, e := range v.Map().All() {
			m[k] = pdataValue(e)
		}
		return m
	}
	return nil
}
