package otlpexport

import (
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/lockprobe/lockprobe/semconv"
)

// complete copies the ended spans of rs into new messages, so that the
// caller may keep, reuse or write out rs while the copy waits for upload, and
// sets service.name on every copied resource. It returns the copy, the number
// of spans kept and the number of partial spans (end_time_unix_nano == 0)
// left out.
func complete(rs []*tracepb.ResourceSpans, service string) (out []*tracepb.ResourceSpans, kept, partial int) {
	for _, r := range rs {
		if r == nil {
			continue
		}
		var scopes []*tracepb.ScopeSpans
		for _, ss := range r.GetScopeSpans() {
			if ss == nil {
				continue
			}
			var spans []*tracepb.Span
			for _, s := range ss.GetSpans() {
				if s == nil {
					continue
				}
				if s.GetEndTimeUnixNano() == 0 {
					partial++
					continue
				}
				spans = append(spans, proto.CloneOf(s))
			}
			if len(spans) == 0 {
				continue
			}
			kept += len(spans)
			scopes = append(scopes, &tracepb.ScopeSpans{
				Scope:     proto.CloneOf(ss.GetScope()),
				SchemaUrl: ss.GetSchemaUrl(),
				Spans:     spans,
			})
		}
		if len(scopes) == 0 {
			continue
		}
		res := proto.CloneOf(r.GetResource())
		if res == nil {
			res = &resourcepb.Resource{}
		}
		setString(&res.Attributes, semconv.ServiceName, service)
		out = append(out, &tracepb.ResourceSpans{
			Resource:   res,
			SchemaUrl:  r.GetSchemaUrl(),
			ScopeSpans: scopes,
		})
	}
	return out, kept, partial
}

// setString sets key to a string value in attrs, replacing every earlier
// value of key (a duplicate key would leave the collector to pick one).
func setString(attrs *[]*commonpb.KeyValue, key, value string) {
	kept := (*attrs)[:0]
	for _, kv := range *attrs {
		if kv.GetKey() != key {
			kept = append(kept, kv)
		}
	}
	*attrs = append(kept, &commonpb.KeyValue{
		Key:   key,
		Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: value}},
	})
}

// countSpans counts the spans in rs.
func countSpans(rs []*tracepb.ResourceSpans) int {
	n := 0
	for _, r := range rs {
		for _, ss := range r.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// takeBatch splits queue after the first entries that together hold at least
// max spans (or all of them). Entries are never split: one entry is what one
// Enqueue call kept of one resource, which stays small.
func takeBatch(queue []*tracepb.ResourceSpans, max int) (batch, rest []*tracepb.ResourceSpans, n int) {
	i := 0
	for i < len(queue) && n < max {
		n += countSpans(queue[i : i+1])
		i++
	}
	return queue[:i:i], queue[i:], n
}
