package tracefile

import (
	"strings"
	"testing"
)

func TestRewriteIDsToBase64(t *testing.T) {
	// 00f067aa0ba902b7 in base64 is APBnqgupArc=.
	tests := []struct {
		name, in, want string
	}{
		{"plain", `{"spanId":"00f067aa0ba902b7"}`, `{"spanId":"APBnqgupArc="}`},
		{"space both sides", `{"spanId" : "00f067aa0ba902b7"}`, `{"spanId" : "APBnqgupArc="}`},
		{"tabs", "{\"spanId\"\t:\t\"00f067aa0ba902b7\"}", "{\"spanId\"\t:\t\"APBnqgupArc=\"}"},
		{"carriage return", "{\"spanId\"\r: \"00f067aa0ba902b7\"}", "{\"spanId\"\r: \"APBnqgupArc=\"}"},
		{"newline", "{\"spanId\":\n\"00f067aa0ba902b7\"}", "{\"spanId\":\n\"APBnqgupArc=\"}"},
		{"all three keys", `{"traceId":"00f067aa0ba902b7","spanId": "00f067aa0ba902b7","parentSpanId" :"00f067aa0ba902b7"}`,
			`{"traceId":"APBnqgupArc=","spanId": "APBnqgupArc=","parentSpanId" :"APBnqgupArc="}`},
		{"empty parent", `{"parentSpanId":""}`, `{"parentSpanId":""}`},
		{"no ids", `{"name":"x"}`, `{"name":"x"}`},
		{"id word as a value", `{"key":"spanId","value":{"stringValue":"zz"}}`, `{"key":"spanId","value":{"stringValue":"zz"}}`},
		{"other key ending in Id", `{"fooId":"zz","spanId":"00f067aa0ba902b7"}`, `{"fooId":"zz","spanId":"APBnqgupArc="}`},
		{"non-string value", `{"spanId":null}`, `{"spanId":null}`},
		{"key at the end", `{"spanId"`, `{"spanId"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rewriteIDs([]byte(tc.in), hexToBase64)
			if err != nil {
				t.Fatalf("rewriteIDs: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("rewriteIDs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRewriteIDsErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"odd hex", `{"spanId":"abc"}`, "parse spans: id"},
		{"not hex", `{"spanId":"zzzz"}`, "parse spans: id"},
		{"unterminated", `{"spanId":"00f0`, "unterminated id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rewriteIDs([]byte(tc.in), hexToBase64)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// UnmarshalLine must read what other OTLP JSON writers produce, whatever their spacing.
func TestUnmarshalLineOddWhitespace(t *testing.T) {
	line := `{ "resourceSpans" : [ { "scopeSpans" : [ { "spans" : [ { "traceId" : "` + testTrace +
		`" , "spanId" :	"` + testSpan + `", "parentSpanId":"` + testParent + `", "name" : "lock.hold" } ] } ] } ] }`
	req, err := UnmarshalLine([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	recs := Records(req.ResourceSpans)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	if r := recs[0]; r.TraceID != testTrace || r.SpanID != testSpan || r.ParentID != testParent || r.Name != "lock.hold" {
		t.Errorf("record %+v", r)
	}
}
