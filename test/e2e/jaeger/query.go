package jaeger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Trace is one trace as Jaeger's JSON query API (/api/traces) shows it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
	Warnings  []string           `json:"warnings"`
}

// Span is a span in Jaeger's model. OTLP span attributes, and the span kind,
// status and scope, become Tags; span events become Logs.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
}

// Reference links a span to another; the OTLP parent becomes CHILD_OF.
type Reference struct {
	RefType string `json:"refType"` // CHILD_OF or FOLLOWS_FROM
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag or log field; Type is string, bool, int64, float64 or
// binary, and Value the JSON value, numbers as json.Number so that int64
// values (pids, offsets, nanoseconds) stay exact.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event: its name is the field "event".
type Log struct {
	Timestamp int64      `json:"timestamp"` // µs since the epoch
	Fields    []KeyValue `json:"fields"`
}

// Process is a span's resource: service.name becomes ServiceName, the other
// resource attributes become Tags.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Lookup returns the value of key in kvs (see KeyValue for its Go type).
func Lookup(kvs []KeyValue, key string) (any, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Span returns the first span named name.
func (t Trace) Span(name string) (Span, bool) {
	for _, s := range t.Spans {
		if s.OperationName == name {
			return s, true
		}
	}
	return Span{}, false
}

// Parent returns the span id s is a CHILD_OF, or "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Event returns the log whose "event" field is name.
func (s Span) Event(name string) (Log, bool) {
	for _, l := range s.Logs {
		if v, _ := Lookup(l.Fields, "event"); v == name {
			return l, true
		}
	}
	return Log{}, false
}

// Traces returns the traces of service that Jaeger holds (at most 1000).
func (j *Jaeger) Traces(ctx context.Context, service string) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {"1000"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+"/api/traces?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jaeger: query traces: %w", err)
	}
	defer resp.Body.Close()
	// An unknown service is "not found" on some versions and an empty list
	// on others: both mean no traces yet.
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("jaeger: read traces: %w", err)
	}
	var out struct {
		Data   []Trace `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("jaeger: decode traces (%s): %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || len(out.Errors) > 0 {
		return nil, fmt.Errorf("jaeger: query traces: %s %+v", resp.Status, out.Errors)
	}
	return out.Data, nil
}

// WaitForTrace polls the query API until service has a trace with at least
// spans spans and returns it; it fails when ctx is done first.
func (j *Jaeger) WaitForTrace(ctx context.Context, service string, spans int) (Trace, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		traces, err := j.Traces(ctx, service)
		last = err
		for _, t := range traces {
			if len(t.Spans) >= spans {
				return t, nil
			}
		}
		if err == nil {
			last = fmt.Errorf("%d traces, none with %d spans", len(traces), spans)
		}
		select {
		case <-ctx.Done():
			return Trace{}, fmt.Errorf("jaeger: waiting for a %d-span trace of %q: %w (last: %v)", spans, service, ctx.Err(), last)
		case <-tick.C:
		}
	}
}
