// Package otlpfield holds the field numbers of the OTLP trace messages
// (opentelemetry/proto trace/v1, common/v1, resource/v1; all stable), for the code that writes
// them with protowire (the locker's sender) and the code that reads them (the trace file's
// decoder): one table, so the two cannot disagree on a number.
package otlpfield

// Field numbers, named Message + Field (Req: ExportTraceServiceRequest, RS: ResourceSpans,
// Res: Resource, SS: ScopeSpans, Any: AnyValue, KV: KeyValue, List: ArrayValue).
const (
	ReqResourceSpans       = 1
	RSResource             = 1
	RSScopeSpans           = 2
	RSDeprecatedScopeSpans = 1000
	ResAttributes          = 1
	SSScope                = 1
	SSSpans                = 2
	ScopeName              = 1
	ScopeVersion           = 2
	SpanTraceID            = 1
	SpanSpanID             = 2
	SpanParentID           = 4
	SpanName               = 5
	SpanKind               = 6
	SpanStart              = 7
	SpanEnd                = 8
	SpanAttrs              = 9
	SpanEvents             = 11
	SpanLinks              = 13
	SpanStatus             = 15
	EventTime              = 1
	EventName              = 2
	EventAttrs             = 3
	LinkTraceID            = 1
	LinkSpanID             = 2
	LinkAttrs              = 4
	StatusMessage          = 2
	StatusCode             = 3
	KVKey                  = 1
	KVValue                = 2
	AnyString              = 1
	AnyBool                = 2
	AnyInt                 = 3
	AnyDouble              = 4
	AnyArray               = 5
	AnyKVList              = 6
	AnyBytes               = 7
	ListValues             = 1
)
