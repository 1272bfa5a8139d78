// Package progrec records real programs — processes lockprobe did not write — as the same
// spans its lockers write: a `lockprobe.locker` span per process (role `program`, its pid and
// command line), `lock.acquire` attempts with their `lock.try` and `lock.conflict` events,
// `lock.hold` spans, `lock.getlk` queries, the observer's `lock.observed` answers, the
// end-of-run snapshot and the root span, into a trace file that `lockprobe analyze` reads like
// any other. The exec tracers feed it lock calls (Recorder), the watch sampler what it saw in
// /proc (the Writer's span calls directly).
package progrec

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
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
	// Tracer names how the lock calls were seen ("ptrace", "ebpf", "sampled /proc").
	Tracer string
}

// Flush timing of the batch (see Writer).
const (
	flushEvery = 100 * time.Millisecond
	maxBatch   = 4096 // records; more wakes the flusher early
)

// Writer writes the spans of one run. It is safe for concurrent use.
//
// A traced program waits while its lock call is recorded, so recording must cost the caller
// next to nothing: records are gathered in a batch and a flusher goroutine encodes and writes
// the batch as one request every 100 ms (or at 4096 records), off the caller's thread. A span
// has at most one record per batch: what happens to it before the batch leaves (its events, its
// end) goes into that record, so an attempt granted at once is one final record, not a partial
// and a final one. A crash of lockprobe loses at most the batch being gathered; a program
// traced by ptrace dies with lockprobe anyway (PTRACE_O_EXITKILL). The same encoded bytes
// are kept for the run's analysis, which then needs no reading back (Trace).
type Writer struct {
	mu      sync.Mutex
	w       *tracefile.Writer
	trace   []byte
	root    *Span
	ctlRes  *resourcepb.Resource
	host    string
	version string
	info    RunInfo
	start   time.Time
	err     error
	nextID  uint64
	gen     uint64 // the batch being gathered
	order   []*tracepb.ResourceSpans
	byRes   map[*resourcepb.Resource]*tracepb.ResourceSpans
	n       int
	closed  bool
	lost    int64
	killed  []string

	flushMu  sync.Mutex // one flush at a time: requests leave in order
	encoded  [][]byte   // the requests written, merged by Trace
	requests int
	kick     chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
}

// Create creates the trace file at path and writes the root span's first record.
func Create(path string, info RunInfo, start time.Time) (*Writer, error) {
	tw, err := tracefile.Create(path)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	w := &Writer{w: tw, trace: randID(16), host: host, version: info.Version, info: info, start: start,
		nextID: binary.BigEndian.Uint64(seed[:]) | 1, byRes: map[*resourcepb.Resource]*tracepb.ResourceSpans{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	w.ctlRes = w.resource("controller", -1, os.Getpid(), nil)
	w.root = &Span{id: w.newID(), res: w.ctlRes, name: semconv.SpanRun, begin: start}
	w.writeRoot(time.Time{}, "")
	go w.flusher()
	if err := w.Flush(); err != nil {
		w.Close(start, "error")
		return nil, err
	}
	return w, nil
}

// Host is the node name every span carries.
func (w *Writer) Host() string { return w.host }

// Close writes the root span's final record (the run's end and why it ended), flushes what is
// gathered and closes the file.
func (w *Writer) Close(end time.Time, reason string) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.Err()
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.stopped
	w.writeRoot(end, reason)
	ferr := w.Flush()
	w.flushMu.Lock()
	cerr := w.w.Close()
	w.flushMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range []error{ferr, cerr} {
		if err != nil && w.err == nil {
			w.err = err
		}
	}
	return w.err
}

// SetLost records how many events the tracer lost (the root span's lockprobe.messages_lost).
func (w *Writer) SetLost(n int64) {
	w.mu.Lock()
	w.lost = n
	w.mu.Unlock()
}

// SetKilled names the processes lockprobe kills at the run's end (the root span's
// lockprobe.killed): a blocked attempt of theirs ends `blocked` at the end instant, and the
// trace says why the process never exited on its own.
func (w *Writer) SetKilled(procs []string) {
	w.mu.Lock()
	w.killed = procs
	w.mu.Unlock()
}

// Err returns the first write error.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Trace returns the spans written, merged as a reader of the file would merge them, from the
// requests kept in memory: the run's analysis needs no reading back, and merging waits until
// the program has ended rather than taking a core from it. Call it after Close.
func (w *Writer) Trace() (*tracefile.Trace, error) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	m := tracefile.NewMerger()
	for _, b := range w.encoded {
		if _, err := m.AddEncoded(b); err != nil {
			return nil, err
		}
	}
	return &tracefile.Trace{Spans: m.Spans(), Requests: w.requests}, nil
}

func (w *Writer) flusher() {
	defer close(w.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
		}
		_ = w.Flush()
	}
}

// Flush writes the records gathered so far as one request.
func (w *Writer) Flush() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	rss := w.order
	w.order, w.n = nil, 0
	clear(w.byRes)
	w.gen++
	w.mu.Unlock()
	if len(rss) == 0 {
		return nil
	}
	b, err := tracefile.Encode(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err == nil {
		err = w.w.WriteEncoded(b)
	}
	if err == nil {
		w.requests++
		w.encoded = append(w.encoded, b)
	}
	if err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
	return err
}

func (w *Writer) newID() []byte {
	w.nextID++
	if w.nextID == 0 {
		w.nextID++ // an all-zero span id is invalid
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), w.nextID)
}

// record returns span s's record in the batch being gathered, adding one (ids, name, start) if
// the batch has none yet. mu is held.
func (w *Writer) record(s *Span) *tracepb.Span {
	if s.rec != nil && s.gen == w.gen {
		return s.rec
	}
	r := &tracepb.Span{TraceId: w.trace, SpanId: s.id, Name: s.name, StartTimeUnixNano: ns(s.begin)}
	if s.parent != nil {
		r.ParentSpanId = s.parent.id
	}
	rs := w.byRes[s.res]
	if rs == nil {
		rs = &tracepb.ResourceSpans{Resource: s.res, ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "github.com/lockprobe/lockprobe/progrec"}}}}
		w.byRes[s.res] = rs
		w.order = append(w.order, rs)
	}
	rs.ScopeSpans[0].Spans = append(rs.ScopeSpans[0].Spans, r)
	s.rec, s.gen = r, w.gen
	if w.n++; w.n == maxBatch {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return r
}

// newSpan starts a span; mu is held.
func (w *Writer) newSpan(res *resourcepb.Resource, parent *Span, name string, begin time.Time, attrs []*commonpb.KeyValue) *Span {
	s := &Span{id: w.newID(), res: res, parent: parent, name: name, begin: begin, attrs: attrs}
	return s
}

func (w *Writer) writeRoot(end time.Time, reason string) {
	i := w.info
	attrs := []*commonpb.KeyValue{
		str(semconv.RunCommand, i.Command), str(semconv.RunScenario, i.Scenario),
		num(semconv.RunProcs, int64(i.Procs)), num(semconv.RunTimeout, int64(i.Timeout)),
		num(semconv.RunPoll, int64(i.Poll)), strs("lockprobe.files", i.Files),
		num(semconv.RunStartNS, w.start.UnixNano()),
	}
	if i.Tracer != "" {
		attrs = append(attrs, str(semconv.RunTracer, i.Tracer))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !end.IsZero() {
		attrs = append(attrs, str(semconv.RunEndReason, reason), num(semconv.RunLost, w.lost))
		if len(w.killed) > 0 {
			attrs = append(attrs, strs(semconv.RunKilled, w.killed))
		}
	}
	r := w.record(w.root)
	if !end.IsZero() {
		r.EndTimeUnixNano = ns(end)
	}
	r.Attributes = attrs
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

// Proc is a process as the trace names it.
type Proc struct {
	ID    int64 // run-unique, in the order processes were first seen
	PID   int
	PPID  int
	Argv  []string
	Start time.Time
	span  *Span
	// lastLock and lastAttrs keep the attributes of the lock the process used last: a program
	// that takes the same lock again and again (a lock loop, casacore's re-checks) builds them once.
	lastLock  Lock
	lastAttrs []*commonpb.KeyValue
}

// CommandLine is the process's argv joined by spaces.
func (p *Proc) CommandLine() string { return strings.Join(p.Argv, " ") }

func (p *Proc) attrs() []*commonpb.KeyValue {
	return []*commonpb.KeyValue{num(semconv.LockerID, p.ID), num(semconv.ProcessPID, int64(p.PID)),
		str(semconv.ProcCommandLine, p.CommandLine())}
}

// StartProc writes the partial record of a process's span.
func (w *Writer) StartProc(p *Proc) {
	res := w.resource(RoleProgram, p.ID, p.PID, []*commonpb.KeyValue{
		str(semconv.ProcCommandLine, p.CommandLine()), num(semconv.ProcParentPID, int64(p.PPID)),
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	p.span = w.newSpan(res, w.root, semconv.SpanLocker, p.Start, p.attrs())
	w.record(p.span).Attributes = p.span.attrs
}

// ExecProc records a new command line for the process (it called execve).
func (w *Writer) ExecProc(p *Proc, at time.Time, argv []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p.Argv = argv
	p.span.attrs = p.attrs()
	p.lastLock, p.lastAttrs = Lock{}, nil
	if !p.span.ended {
		w.record(p.span).Attributes = p.span.attrs
	}
}

// EndProc ends the process's span; exited says it ended (with status and signal) rather than
// outliving the run.
func (w *Writer) EndProc(p *Proc, at time.Time, exited bool, status, signal string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := p.span
	if s.ended {
		return
	}
	s.ended = true
	r := w.record(s)
	r.EndTimeUnixNano, r.Attributes = ns(at), s.attrs
	if exited {
		r.Events = append(r.Events, &tracepb.Span_Event{TimeUnixNano: ns(at), Name: semconv.EventExit, Attributes: []*commonpb.KeyValue{
			str(semconv.ExitStatus, status), str(semconv.ExitSignal, signal), num(semconv.ProcessPID, int64(p.PID)), num(semconv.LockerID, p.ID)}})
	}
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

// lockAttrs are the attributes of a span about l; the slice may be shared, callers append to
// it only through a full slice expression. mu is held.
func (l Lock) lockAttrs(p *Proc) []*commonpb.KeyValue {
	if p.lastAttrs != nil && p.lastLock == l {
		return p.lastAttrs[:len(p.lastAttrs):len(p.lastAttrs)]
	}
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
	p.lastLock, p.lastAttrs = l, a
	return a[:len(a):len(a)]
}

// Span is an attempt, a hold, a getlk or a member's span being written.
type Span struct {
	id     []byte
	res    *resourcepb.Resource
	parent *Span
	name   string
	begin  time.Time
	attrs  []*commonpb.KeyValue
	ended  bool
	rec    *tracepb.Span // its record in the batch being gathered, when gen is the writer's
	gen    uint64
}

// ID is the span id in hex.
func (s *Span) ID() string { return hex.EncodeToString(s.id) }

// Begin is when the span began.
func (s *Span) Begin() time.Time { return s.begin }

// StartAttempt writes the partial record of an attempt that began at begin.
func (w *Writer) StartAttempt(p *Proc, l Lock, style semconv.Style, begin time.Time) *Span {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.newSpan(p.span.res, p.span, semconv.SpanAcquire, begin, append(l.lockAttrs(p), str(semconv.LockStyle, style.String())))
	w.record(s).Attributes = append(s.attrs[:len(s.attrs):len(s.attrs)], str(semconv.LockOutcome, semconv.OutcomeWaiting.String()))
	return s
}

// Event adds an event to an open span.
func (w *Writer) Event(s *Span, at time.Time, name string, attrs []*commonpb.KeyValue) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.ended {
		return
	}
	r := w.record(s)
	r.Events = append(r.Events, &tracepb.Span_Event{TimeUnixNano: ns(at), Name: name, Attributes: attrs})
}

// end writes a span's final record with attrs; mu is held.
func (w *Writer) end(s *Span, end time.Time, attrs []*commonpb.KeyValue) {
	s.ended = true
	r := w.record(s)
	r.EndTimeUnixNano, r.Attributes = ns(end), attrs
}

// EndAttempt writes an attempt's final record.
func (w *Writer) EndAttempt(s *Span, end time.Time, style semconv.Style, outcome semconv.Outcome, errno string, tries int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.ended {
		return
	}
	attrs := append(s.attrs[:len(s.attrs):len(s.attrs)], str(semconv.LockOutcome, outcome.String()), str(semconv.LockErrno, errno),
		num(semconv.LockTries, int64(tries)))
	for i, a := range attrs {
		if a.Key == semconv.LockStyle {
			attrs[i] = str(semconv.LockStyle, style.String())
		}
	}
	w.end(s, end, attrs)
}

// StartHold writes the partial record of a hold granted at begin by the attempt acquire (nil
// when the hold was seen, not granted in front of us).
func (w *Writer) StartHold(p *Proc, l Lock, begin time.Time, acquire *Span) *Span {
	w.mu.Lock()
	defer w.mu.Unlock()
	attrs := l.lockAttrs(p)
	if acquire != nil {
		attrs = append(attrs, str(semconv.LockAcquireID, acquire.ID()))
	}
	s := w.newSpan(p.span.res, p.span, semconv.SpanHold, begin, attrs)
	w.record(s).Attributes = append(s.attrs[:len(s.attrs):len(s.attrs)], str(semconv.LockHoldEnd, semconv.HoldOpen.String()))
	return s
}

// EndHold writes a hold's final record; how is a semconv.Hold* value, closedFD the descriptor
// whose close ended it (-1 otherwise), rechecks how many granted calls re-took it unchanged.
func (w *Writer) EndHold(s *Span, end time.Time, how semconv.HoldEnd, closedFD int, rechecks int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.ended {
		return
	}
	attrs := append(s.attrs[:len(s.attrs):len(s.attrs)], str(semconv.LockHoldEnd, how.String()), num(semconv.LockRechecks, rechecks))
	if closedFD >= 0 {
		attrs = append(attrs, num(semconv.LockClosedFD, int64(closedFD)))
	}
	w.end(s, end, attrs)
}

// Getlk writes an F_GETLK a program made, with what it answered.
func (w *Writer) Getlk(p *Proc, l Lock, begin, end time.Time, owner []*commonpb.KeyValue) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.newSpan(p.span.res, p.span, semconv.SpanGetlk, begin, nil)
	w.end(s, end, append(l.lockAttrs(p), owner...))
}

// Observer is the span of lockprobe's own F_GETLK witness (it never locks).
type Observer struct {
	id   int64
	span *Span
}

// StartObserver writes the observer's span; id is negative (-1-k), as the lockers' observers.
func (w *Writer) StartObserver(id int64, start time.Time) *Observer {
	res := w.resource("observer", id, os.Getpid(), nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	o := &Observer{id: id, span: w.newSpan(res, w.root, semconv.SpanObserver, start, []*commonpb.KeyValue{num(semconv.LockerID, id)})}
	w.record(o.span).Attributes = o.span.attrs
	return o
}

// Observed records one change of the observer's answer.
func (w *Writer) Observed(o *Observer, at time.Time, attrs []*commonpb.KeyValue) {
	w.Event(o.span, at, semconv.EventObserved, attrs)
}

// EndObserver ends the observer's span.
func (w *Writer) EndObserver(o *Observer, end time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !o.span.ended {
		w.end(o.span, end, o.span.attrs)
	}
}

// Snapshot writes the end-of-run snapshot: each event a process state or a /proc/locks line.
func (w *Writer) Snapshot(at time.Time, events []*tracepb.Span_Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.newSpan(w.ctlRes, w.root, semconv.SpanSnapshot, at, nil)
	w.end(s, at, nil)
	s.rec.Events = events
}

func ns(t time.Time) uint64 { return uint64(t.UnixNano()) }

func randID(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Str, Num and Strs make attributes (tracefile's constructors).
var (
	Str  = tracefile.Str
	Num  = tracefile.Int
	Strs = tracefile.Strs
	str  = tracefile.Str
	num  = tracefile.Int
	strs = tracefile.Strs
)
