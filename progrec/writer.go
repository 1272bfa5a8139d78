// Package progrec records real programs — processes lockprobe did not write — as the same
// spans its lockers write: a `lockprobe.locker` span per process (role `program`, its pid and
// command line), `lock.acquire` attempts with their `lock.try` and `lock.conflict` events,
// `lock.hold` spans, `lock.getlk` queries, the observer's `lock.observed` answers, the
// end-of-run snapshot and the root span, into a trace.jsonl that `lockprobe analyze` reads like
// any other. The exec tracer feeds it lock calls (Recorder.Call), the watch sampler what it saw
// in /proc (the Writer's span calls directly).
package progrec

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// RoleProgram is locker.role of a process of a real program.
const RoleProgram = "program"

// RunInfo describes the run for the root span.
type RunInfo struct {
	Command  string        // the lockprobe command line
	Scenario string        // "exec: PROGRAM" or "watch"
	Procs    int           // copies started, or processes watched
	Timeout  time.Duration // 0: none
	Poll     time.Duration
	Files    []string
	Version  string
}

// Writer writes the spans of one run. It is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	w       *tracefile.Writer
	trace   []byte
	root    []byte
	host    string
	version string
	info    RunInfo
	start   time.Time
	err     error
}

// Create creates the trace file at path and writes the root span's first record.
func Create(path string, info RunInfo, start time.Time) (*Writer, error) {
	tw, err := tracefile.Create(path)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	w := &Writer{w: tw, trace: randID(16), root: randID(8), host: host, version: info.Version, info: info, start: start}
	w.writeRoot(time.Time{}, "")
	return w, w.err
}

// Host is the node name every span carries.
func (w *Writer) Host() string { return w.host }

// Close writes the root span's final record (the run's end and why it ended) and closes the file.
func (w *Writer) Close(end time.Time, reason string) error {
	w.writeRoot(end, reason)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.w.Close(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// Err returns the first write error.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) writeRoot(end time.Time, reason string) {
	i := w.info
	attrs := []*commonpb.KeyValue{
		str(semconv.RunCommand, i.Command), str(semconv.RunScenario, i.Scenario),
		num(semconv.RunProcs, int64(i.Procs)), num(semconv.RunTimeout, int64(i.Timeout)),
		num(semconv.RunPoll, int64(i.Poll)), strs("lockprobe.files", i.Files),
		num(semconv.RunStartNS, w.start.UnixNano()),
	}
	s := &tracepb.Span{TraceId: w.trace, SpanId: w.root, Name: semconv.SpanRun, StartTimeUnixNano: ns(w.start)}
	if !end.IsZero() {
		s.EndTimeUnixNano = ns(end)
		attrs = append(attrs, str(semconv.RunEndReason, reason), num(semconv.RunLost, 0))
	}
	s.Attributes = attrs
	w.write(w.resource("controller", -1, os.Getpid(), nil), s)
}

// resource is a member's resource: the controller's, a program process's, the observer's.
func (w *Writer) resource(role string, id int64, pid int, extra []*commonpb.KeyValue) *resourcepb.Resource {
	attrs := []*commonpb.KeyValue{
		str(semconv.ServiceName, "lockprobe"), str(semconv.HostName, w.host), num(semconv.ProcessPID, int64(pid)),
		str(semconv.LockerRole, role), str(semconv.Node, w.host), str(semconv.ToolVersion, w.version),
	}
	if role != "controller" {
		attrs = append(attrs, num(semconv.LockerID, id))
	}
	return &resourcepb.Resource{Attributes: append(attrs, extra...)}
}

func (w *Writer) write(res *resourcepb.Resource, spans ...*tracepb.Span) {
	rs := &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{
		Scope: &commonpb.InstrumentationScope{Name: "github.com/lockprobe/lockprobe/progrec"}, Spans: spans}}}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	if err := w.w.WriteSpans(rs); err != nil {
		w.err = err
	}
}

// Proc is a process as the trace names it.
type Proc struct {
	ID      int64 // run-unique, in the order processes were first seen
	PID     int
	PPID    int
	Argv    []string
	Start   time.Time
	spanID  []byte
	res     *resourcepb.Resource
	attrs   []*commonpb.KeyValue
	exited  bool
	spanEnd time.Time
}

// CommandLine is the process's argv joined by spaces.
func (p *Proc) CommandLine() string { return strings.Join(p.Argv, " ") }

// StartProc writes the partial record of a process's span.
func (w *Writer) StartProc(p *Proc) {
	p.spanID = randID(8)
	p.res = w.resource(RoleProgram, p.ID, p.PID, []*commonpb.KeyValue{
		str(semconv.ProcCommandLine, p.CommandLine()), num(semconv.ProcParentPID, int64(p.PPID)),
	})
	p.attrs = []*commonpb.KeyValue{num(semconv.LockerID, p.ID), num(semconv.ProcessPID, int64(p.PID)),
		str(semconv.ProcCommandLine, p.CommandLine())}
	w.write(p.res, &tracepb.Span{TraceId: w.trace, SpanId: p.spanID, ParentSpanId: w.root, Name: semconv.SpanLocker,
		StartTimeUnixNano: ns(p.Start), Attributes: p.attrs})
}

// ExecProc records a new command line for the process (it called execve).
func (w *Writer) ExecProc(p *Proc, at time.Time, argv []string) {
	p.Argv = argv
	p.attrs = []*commonpb.KeyValue{num(semconv.LockerID, p.ID), num(semconv.ProcessPID, int64(p.PID)),
		str(semconv.ProcCommandLine, p.CommandLine())}
	w.write(p.res, &tracepb.Span{TraceId: w.trace, SpanId: p.spanID, ParentSpanId: w.root, Name: semconv.SpanLocker,
		StartTimeUnixNano: ns(p.Start), Attributes: p.attrs})
}

// EndProc ends the process's span; exited says it ended (with status and signal) rather than
// outliving the run.
func (w *Writer) EndProc(p *Proc, at time.Time, exited bool, status, signal string) {
	if p.exited {
		return
	}
	p.exited = true
	s := &tracepb.Span{TraceId: w.trace, SpanId: p.spanID, ParentSpanId: w.root, Name: semconv.SpanLocker,
		StartTimeUnixNano: ns(p.Start), EndTimeUnixNano: ns(at), Attributes: p.attrs}
	if exited {
		s.Events = []*tracepb.Span_Event{{TimeUnixNano: ns(at), Name: semconv.EventExit, Attributes: []*commonpb.KeyValue{
			str(semconv.ExitStatus, status), str(semconv.ExitSignal, signal), num(semconv.ProcessPID, int64(p.PID)), num(semconv.LockerID, p.ID)}}}
	}
	w.write(p.res, s)
}

// Lock is what an attempt or a hold is about.
type Lock struct {
	Kind       semconv.Kind
	Mode       semconv.Mode
	Start, Len int64
	Path       string
	Dev        string // "major:minor"
	Inode      uint64
	FD         int
	TID        int
	Text       string // the call as strace names it
}

func (l Lock) attrs(p *Proc) []*commonpb.KeyValue {
	a := []*commonpb.KeyValue{
		num(semconv.LockerID, p.ID), str(semconv.LockKind, l.Kind.String()), str(semconv.LockMode, l.Mode.String()),
		num(semconv.LockStart, l.Start), num(semconv.LockLen, l.Len), num(semconv.LockFD, int64(l.FD)),
		str(semconv.FilePath, l.Path), str(semconv.FileLogical, l.Path), num(semconv.ProcTID, int64(l.TID)),
	}
	if l.Dev != "" {
		a = append(a, str(semconv.FileDev, l.Dev), num(semconv.FileInode, int64(l.Inode)))
	}
	if l.Text != "" {
		a = append(a, str(semconv.LockCmdText, l.Text))
	}
	return a
}

// Span is an attempt, a hold or a getlk being written.
type Span struct {
	id    []byte
	p     *Proc
	name  string
	begin time.Time
	attrs []*commonpb.KeyValue
	ended bool
}

// ID is the span id in hex.
func (s *Span) ID() string { return hex.EncodeToString(s.id) }

// Begin is when the span began.
func (s *Span) Begin() time.Time { return s.begin }

// StartAttempt writes the partial record of an attempt that began at begin.
func (w *Writer) StartAttempt(p *Proc, l Lock, style semconv.Style, begin time.Time) *Span {
	s := &Span{id: randID(8), p: p, name: semconv.SpanAcquire, begin: begin,
		attrs: append(l.attrs(p), str(semconv.LockStyle, style.String()))}
	w.write(p.res, &tracepb.Span{TraceId: w.trace, SpanId: s.id, ParentSpanId: p.spanID, Name: s.name,
		StartTimeUnixNano: ns(begin), Attributes: append(s.attrs, str(semconv.LockOutcome, semconv.OutcomeWaiting.String()))})
	return s
}

// Event adds an event to an open span (a partial record with just the event).
func (w *Writer) Event(s *Span, at time.Time, name string, attrs []*commonpb.KeyValue) {
	if s.ended {
		return
	}
	w.write(s.p.res, &tracepb.Span{TraceId: w.trace, SpanId: s.id, ParentSpanId: s.p.spanID, Name: s.name,
		StartTimeUnixNano: ns(s.begin), Events: []*tracepb.Span_Event{{TimeUnixNano: ns(at), Name: name, Attributes: attrs}}})
}

// EndAttempt writes an attempt's final record.
func (w *Writer) EndAttempt(s *Span, end time.Time, style semconv.Style, outcome semconv.Outcome, errno string, tries int) {
	if s.ended {
		return
	}
	s.ended = true
	attrs := append(s.attrs[:len(s.attrs):len(s.attrs)], str(semconv.LockOutcome, outcome.String()), str(semconv.LockErrno, errno),
		num(semconv.LockTries, int64(tries)))
	for i, a := range attrs {
		if a.Key == semconv.LockStyle {
			attrs[i] = str(semconv.LockStyle, style.String())
		}
	}
	w.write(s.p.res, &tracepb.Span{TraceId: w.trace, SpanId: s.id, ParentSpanId: s.p.spanID, Name: s.name,
		StartTimeUnixNano: ns(s.begin), EndTimeUnixNano: ns(end), Attributes: attrs})
}

// StartHold writes the partial record of a hold granted at begin by the attempt acquire (nil
// when the hold was seen, not granted in front of us).
func (w *Writer) StartHold(p *Proc, l Lock, begin time.Time, acquire *Span) *Span {
	s := &Span{id: randID(8), p: p, name: semconv.SpanHold, begin: begin, attrs: l.attrs(p)}
	if acquire != nil {
		s.attrs = append(s.attrs, str(semconv.LockAcquireID, acquire.ID()))
	}
	w.write(p.res, &tracepb.Span{TraceId: w.trace, SpanId: s.id, ParentSpanId: p.spanID, Name: s.name,
		StartTimeUnixNano: ns(begin), Attributes: append(s.attrs, str(semconv.LockHoldEnd, semconv.HoldOpen.String()))})
	return s
}

// EndHold writes a hold's final record; how is a semconv.Hold* value, closedFD the descriptor
// whose close ended it (-1 otherwise), rechecks how many granted calls re-took it unchanged.
func (w *Writer) EndHold(s *Span, end time.Time, how semconv.HoldEnd, closedFD int, rechecks int64) {
	if s.ended {
		return
	}
	s.ended = true
	attrs := append(s.attrs[:len(s.attrs):len(s.attrs)], str(semconv.LockHoldEnd, how.String()), num(semconv.LockRechecks, rechecks))
	if closedFD >= 0 {
		attrs = append(attrs, num(semconv.LockClosedFD, int64(closedFD)))
	}
	w.write(s.p.res, &tracepb.Span{TraceId: w.trace, SpanId: s.id, ParentSpanId: s.p.spanID, Name: s.name,
		StartTimeUnixNano: ns(s.begin), EndTimeUnixNano: ns(end), Attributes: attrs})
}

// Getlk writes an F_GETLK a program made, with what it answered.
func (w *Writer) Getlk(p *Proc, l Lock, begin, end time.Time, owner []*commonpb.KeyValue) {
	w.write(p.res, &tracepb.Span{TraceId: w.trace, SpanId: randID(8), ParentSpanId: p.spanID, Name: semconv.SpanGetlk,
		StartTimeUnixNano: ns(begin), EndTimeUnixNano: ns(end), Attributes: append(l.attrs(p), owner...)})
}

// Observer is the span of lockprobe's own F_GETLK witness (it never locks).
type Observer struct {
	id    int64
	span  *Span
	res   *resourcepb.Resource
	start time.Time
}

// StartObserver writes the observer's span; id is negative (-1-k), as the lockers' observers.
func (w *Writer) StartObserver(id int64, start time.Time) *Observer {
	o := &Observer{id: id, res: w.resource("observer", id, os.Getpid(), nil), start: start}
	o.span = &Span{id: randID(8), name: semconv.SpanObserver, begin: start, p: &Proc{res: o.res, spanID: w.root}}
	w.write(o.res, &tracepb.Span{TraceId: w.trace, SpanId: o.span.id, ParentSpanId: w.root, Name: semconv.SpanObserver,
		StartTimeUnixNano: ns(start), Attributes: []*commonpb.KeyValue{num(semconv.LockerID, id)}})
	return o
}

// Observed records one change of the observer's answer.
func (w *Writer) Observed(o *Observer, at time.Time, attrs []*commonpb.KeyValue) {
	w.Event(o.span, at, semconv.EventObserved, attrs)
}

// EndObserver ends the observer's span.
func (w *Writer) EndObserver(o *Observer, end time.Time) {
	w.write(o.res, &tracepb.Span{TraceId: w.trace, SpanId: o.span.id, ParentSpanId: w.root, Name: semconv.SpanObserver,
		StartTimeUnixNano: ns(o.start), EndTimeUnixNano: ns(end), Attributes: []*commonpb.KeyValue{num(semconv.LockerID, o.id)}})
}

// Snapshot writes the end-of-run snapshot: each event a process state or a /proc/locks line.
func (w *Writer) Snapshot(at time.Time, events []*tracepb.Span_Event) {
	w.write(w.resource("controller", -1, os.Getpid(), nil), &tracepb.Span{TraceId: w.trace, SpanId: randID(8), ParentSpanId: w.root,
		Name: semconv.SpanSnapshot, StartTimeUnixNano: ns(at), EndTimeUnixNano: ns(at), Events: events})
}

func ns(t time.Time) uint64 { return uint64(t.UnixNano()) }

func randID(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Str, Num and Strs make attributes.
func Str(k, v string) *commonpb.KeyValue { return str(k, v) }

// Num makes an integer attribute.
func Num(k string, v int64) *commonpb.KeyValue { return num(k, v) }

// Strs makes a string-list attribute.
func Strs(k string, vs []string) *commonpb.KeyValue { return strs(k, vs) }

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func strs(k string, vs []string) *commonpb.KeyValue {
	arr := &commonpb.ArrayValue{}
	for _, v := range vs {
		arr.Values = append(arr.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}})
	}
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}}
}
