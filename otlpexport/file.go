package otlpexport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// ExportFile uploads the spans of a saved trace file (trace.jsonl: one
// ExportTraceServiceRequest per line in the OTLP JSON encoding) and returns what became of
// them. It waits for every upload, each bounded by opts.UploadTimeout, and
// stops early when ctx is done.
//
// Records of the same span (trace_id + span_id) are merged as the trace file
// reader merges them: attributes of later records win, except that a partial
// record never overrides the final one (end_time_unix_nano != 0), events are
// united, the final end wins. A span that only has partial records was
// still running when the file ended — a waiter that never returned is the
// interesting case — so it is exported with end = the latest timestamp seen
// anywhere in the file, and a lock.acquire span among them gets
// lock.outcome="blocked". An unfinished last line (a run that was killed) is
// logged and counted in Stats.SkippedLines, not an error; any other
// unreadable line is.
func ExportFile(ctx context.Context, path string, opts Options) (Stats, error) {
	opts = opts.withDefaults()
	reqs, skipped, err := readTraceFile(path)
	if err != nil {
		return Stats{}, err
	}
	if skipped > 0 {
		opts.Logger.Warn("otlpexport: trace file ends with an unfinished line; it is skipped", "path", path)
	}
	rs := mergeSpans(reqs)
	batch, n, _ := complete(rs, opts.serviceName(), nil)
	st := Stats{SkippedLines: skipped}
	if n == 0 {
		return st, nil
	}

	client, t, err := startClient(ctx, opts)
	if err != nil {
		return st, err
	}
	up := newUploader(client, t, opts)
	for len(batch) > 0 && ctx.Err() == nil {
		var b []*tracepb.ResourceSpans
		var k int
		b, batch, k = takeBatch(batch, opts.BatchSpans)
		up.upload(ctx, b, k)
	}
	st.Unsent = countSpans(batch)
	ust := up.stats()
	st.Exported, st.Failed = ust.Exported, ust.Failed
	// Stop only closes connections now that nothing is in flight; it gets
	// its own short deadline so that a cancelled ctx still lets it finish.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	stopErr := client.Stop(stopCtx)
	return st, up.closeErr(st, ctx.Err(), stopErr)
}

// readTraceFile reads every line of a trace file as an
// ExportTraceServiceRequest. A last line that does not parse and has no
// newline is counted as skipped; empty lines are ignored.
//
// It exists because tracefile.Read returns the merged analysis model, not the
// OTLP messages an upload needs; each line is decoded by tracefile.UnmarshalLine
// (hex ids). A tracefile reader of raw requests would replace this.
func readTraceFile(path string) ([]*coltracepb.ExportTraceServiceRequest, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("otlpexport: open trace file: %w", err)
	}
	defer f.Close()
	reqs, skipped, err := parseTraceLines(f)
	if err != nil {
		return nil, 0, fmt.Errorf("otlpexport: %s: %w", path, err)
	}
	return reqs, skipped, nil
}

// parseTraceLines is readTraceFile's parser, separate for the fuzz test.
func parseTraceLines(r io.Reader) ([]*coltracepb.ExportTraceServiceRequest, int, error) {
	br := bufio.NewReader(r)
	var reqs []*coltracepb.ExportTraceServiceRequest
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("line %d: %w", lineNo, err)
		}
		last := errors.Is(err, io.EOF)
		unterminated := last && len(line) > 0
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			req, perr := tracefile.UnmarshalLine(line)
			if perr != nil {
				if unterminated {
					return reqs, 1, nil
				}
				return nil, 0, fmt.Errorf("line %d: %w", lineNo, perr)
			}
			reqs = append(reqs, req)
		}
		if last {
			return reqs, 0, nil
		}
	}
}

// spanRecord is one span, its records merged, with where it first came from.
type spanRecord struct {
	span     *tracepb.Span
	resource *resourcepb.Resource
	scope    *commonpb.InstrumentationScope
	rsSchema string
	ssSchema string
}

// mergeSpans merges the records of each span (see ExportFile and
// mergeRecord for the rules) and regroups the spans by the resource and scope
// of their first record, in the order spans first appear.
func mergeSpans(reqs []*coltracepb.ExportTraceServiceRequest) []*tracepb.ResourceSpans {
	byKey := map[spanKey]*spanRecord{}
	var order []spanKey
	var latest uint64
	for _, req := range reqs {
		for _, r := range req.GetResourceSpans() {
			for _, ss := range r.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					latest = max(latest, s.GetStartTimeUnixNano(), s.GetEndTimeUnixNano())
					for _, e := range s.GetEvents() {
						latest = max(latest, e.GetTimeUnixNano())
					}
					k := keyOf(s)
					if rec, ok := byKey[k]; ok {
						mergeRecord(rec.span, s)
						continue
					}
					order = append(order, k)
					byKey[k] = &spanRecord{span: proto.CloneOf(s), resource: r.GetResource(), scope: ss.GetScope(),
						rsSchema: r.GetSchemaUrl(), ssSchema: ss.GetSchemaUrl()}
				}
			}
		}
	}

	type group struct {
		rs     *tracepb.ResourceSpans
		scopes map[string]*tracepb.ScopeSpans
	}
	groups := map[string]*group{}
	var out []*tracepb.ResourceSpans
	marshal := proto.MarshalOptions{Deterministic: true}
	for _, k := range order {
		rec := byKey[k]
		s := rec.span
		if s.GetEndTimeUnixNano() == 0 {
			s.EndTimeUnixNano = max(latest, s.GetStartTimeUnixNano())
			if s.GetName() == semconv.SpanAcquire {
				setString(&s.Attributes, semconv.LockOutcome, semconv.OutcomeBlocked.String())
			}
		}
		rb, _ := marshal.Marshal(rec.resource)
		rk := string(rb) + "\x00" + rec.rsSchema
		g := groups[rk]
		if g == nil {
			g = &group{rs: &tracepb.ResourceSpans{Resource: rec.resource, SchemaUrl: rec.rsSchema},
				scopes: map[string]*tracepb.ScopeSpans{}}
			groups[rk] = g
			out = append(out, g.rs)
		}
		sb, _ := marshal.Marshal(rec.scope)
		sk := string(sb) + "\x00" + rec.ssSchema
		ss := g.scopes[sk]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: rec.scope, SchemaUrl: rec.ssSchema}
			g.scopes[sk] = ss
			g.rs.ScopeSpans = append(g.rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, s)
	}
	return out
}
