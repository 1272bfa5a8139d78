package analysis

import (
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// Builder builds a trace's model while the trace is read (tracefile.Stream): the attempts,
// holds and commands, nearly all of a trace's spans, go into the model one at a time as each
// completes and are let go, so that a large trace is never held in memory whole beside its
// model. The result is Analyze's for the same trace.
type Builder struct {
	opts Options
	m    *model
}

// NewBuilder returns an empty Builder.
func NewBuilder(opts Options) *Builder { return &Builder{opts: opts, m: newModel()} }

// Streamed says which spans Add takes as they complete: attempts, holds and the other commands
// (a storm's releases: a third of its spans), the bulk of a trace. The others (the run, its
// processes, snapshots, silences, F_GETLK queries) are few, and some may get records after
// their final one (the controller adds a member's exit, the verdict): they come merged with
// the rest of the trace, to Finish.
func Streamed(name string) bool {
	return name == semconv.SpanAcquire || name == semconv.SpanHold || name == semconv.SpanCommand
}

// Add takes one complete span that Streamed names into the model. Nothing of s is kept beyond
// the call but its strings and attribute values.
func (b *Builder) Add(s *tracefile.Span) { b.m.add(s) }

// Finish takes the rest of the trace (t.Spans, which Add did not take) and runs the whole
// analysis, as Analyze does. t.Spans is nil after.
func (b *Builder) Finish(t *tracefile.Trace) *Result {
	m := b.m
	var end int64
	for _, s := range t.Spans {
		if s.Name == semconv.SpanRun && s.End > 0 {
			end = s.End
		}
	}
	spans := t.Spans
	t.Spans = nil
	for i, s := range spans {
		spans[i] = nil
		m.add(s)
	}
	m.index()
	a := New(b.opts)
	a.m = m
	a.SetTruncated(t.Truncated)
	if end == 0 {
		end = m.last
	}
	return a.Finalize(end)
}
