package otlpexport

import (
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/tracefile"
)

// pending merges the records a Forwarder is handed by tracefile's one rule (the merge of the
// trace reader and the live controller) and gives back each span once, when it is ready: at
// its final record, or at Close for the spans named in Options.Hold, which get records after
// their final one (the verdict on the root, a locker's exit event).
type pending struct {
	m         *tracefile.Merger
	holdNames map[string]bool
}

func newPending(hold []string) *pending {
	p := &pending{m: tracefile.NewMerger(), holdNames: map[string]bool{}}
	for _, n := range hold {
		p.holdNames[n] = true
	}
	return p
}

// add merges rs and returns the spans it completed, and how many of its records were partial.
func (p *pending) add(rs []*tracepb.ResourceSpans) (ready []*tracefile.Span, partial int) {
	for _, r := range rs {
		for _, ss := range r.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				if s.GetEndTimeUnixNano() == 0 {
					partial++
				}
			}
		}
	}
	seen := map[*tracefile.Span]bool{}
	for _, s := range p.m.Add(rs) {
		if s.Open() || p.holdNames[s.Name] || seen[s] {
			continue
		}
		seen[s] = true
		ready = append(ready, s)
		p.m.Remove(s) // sent once: a late record does not send it again
	}
	return ready, partial
}

// takeHeld returns the held spans that have ended and stops holding.
func (p *pending) takeHeld() []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range p.m.Spans() {
		if p.holdNames[s.Name] && !s.Open() {
			out = append(out, s)
			p.m.Remove(s)
		}
	}
	p.holdNames = map[string]bool{}
	return out
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
