package analysis

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// spanKey is how the Analyzer knows a span: by the merged span itself. Keyed by trace and span
// id, the live path's maps hashed and compared two strings per record, a tenth of the
// controller's CPU per record (bench/FINDINGS.md); the merger gives every record of a span the
// same *Span anyway.
type spanKey = *tracefile.Span

// The marks an Analyzer leaves in a span it observed (tracefile.Span.Marks): whether it is in
// the Analyzer's order and in its live set's open and ended spans. A table of every span
// observed (a map from the span to its place) cost the controller's loop as much as merging
// the record did: a cache miss per record in a table of 10^5 spans, and its growth.
const (
	markOrdered uint8 = 1 << iota
	markOpen
	markEnded
)

// Options tune the detectors. The zero value gives the defaults.
type Options struct {
	// StuckAfter is how long a waiter must stay blocked under the same suspicious evidence
	// (F_GETLK says nothing conflicts, the owner is gone, ...) before it is reported. Optional:
	// DefaultStuckAfter when zero.
	StuckAfter time.Duration
	// Settle is how long a cycle must have existed before Check reports it, so that a span
	// whose end is still on its way does not make a false cycle. Optional: the run's poll
	// interval (lockprobe.poll_ns), else lockmodel.DefaultPoll.
	Settle time.Duration
	// Immediate reports a waiter as soon as it is seen blocked under the evidence, however
	// short the time: a single look at running processes (watch -for 0) cannot tell how long a
	// call has been waiting.
	Immediate bool
}

// DefaultStuckAfter is Options.StuckAfter when zero.
const DefaultStuckAfter = 5 * time.Second

// Analyzer gathers merged spans and runs the detectors on them. It is not safe for concurrent use.
type Analyzer struct {
	opts      Options
	order     []*tracefile.Span // in the order first observed: a trace's order, offline
	dirty     bool
	truncated bool
	m         *model
	live      liveSet // what Check looks at: the run's present, not its history
}

// New returns an empty Analyzer.
func New(opts Options) *Analyzer {
	if opts.StuckAfter <= 0 {
		opts.StuckAfter = DefaultStuckAfter
	}
	return &Analyzer{opts: opts, live: newLiveSet()}
}

// Observe records the span as known now. The same span may be observed many times as its records
// arrive, merged into the same *Span each time (as tracefile.Merger does): the Analyzer knows a
// span by that pointer and keeps it, so the caller must not change the span except by merging
// later records into it. It marks the span (Span.Marks), so a span is observed by one Analyzer.
func (a *Analyzer) Observe(s *tracefile.Span) {
	if s == nil {
		return
	}
	k := spanKey(s)
	if s.Marks&markOrdered == 0 {
		s.Marks |= markOrdered
		a.order = append(a.order, s)
	}
	a.dirty = true
	a.live.observe(k, s)
}

// SetTruncated records that the trace file ended in an unfinished line.
func (a *Analyzer) SetTruncated(v bool) { a.truncated = v }

// Analyze runs the whole analysis of a trace read from a file. The end of the run is the root
// span's end, else the latest instant in the trace.
func Analyze(t *tracefile.Trace, opts Options) *Result {
	return analyze(t, opts, false)
}

// Consume is Analyze for a trace read only to be analysed: the spans are let go as the model
// is built from them (t.Spans is nil after), so that a large trace is not held in memory beside
// its model.
func Consume(t *tracefile.Trace, opts Options) *Result {
	return analyze(t, opts, true)
}

func analyze(t *tracefile.Trace, opts Options, consume bool) *Result {
	a := New(opts)
	var end int64
	for _, s := range t.Spans {
		if s.Name == semconv.SpanRun && s.End > 0 {
			end = s.End
		}
	}
	// A trace's spans are merged already, one each: they are the model's input as they are, and
	// Check's live set, which only the live controller needs, is not kept.
	a.order = t.Spans
	if consume {
		t.Spans = nil
	}
	a.SetTruncated(t.Truncated)
	a.m = buildModel(a.order, consume)
	a.order = nil
	if end == 0 {
		end = a.m.last
	}
	return a.Finalize(end)
}

// model is the event model rebuilt from the spans, with its indexes.
type model struct {
	run       Run
	lockers   []*Locker // role locker, sorted by id
	observers []*Locker
	byID      map[int64]*Locker
	attempts  []*Attempt // sorted by begin, id; they point into attChunks, shared with the Result
	holds     []*Hold    // sorted by begin, id; they point into holdChunks
	// attChunks and holdChunks hold the attempts and holds, in the order they came.
	attChunks  [][]Attempt
	holdChunks [][]Hold
	getlks     []*Getlk
	obs        []Observation // sorted by instant
	states     []ProcState
	plocks     []ProcLock
	snapAt     int64
	snapNode   string
	byLocker   map[int64][]*Attempt
	procs      *lockmodel.Processes // the lockers by process and lock-thread ids: the owner rule's table
	// sem is how the run's file system arbitrates locks, read off the lockers' host facts
	// (semanticsOf).
	sem       lockmodel.Semantics
	fs        Semantics         // sem, and what the reports say of it
	holdsOf   map[int64][]*Hold // by begin
	holdsTill map[int64][]int64 // holdsTill[l][i]: the latest end among holdsOf[l][:i+1] (open: max)
	holdsFile map[string][]*Hold
	obsRuns   map[string][]obsRun // per file, in time order
	last      int64               // the latest instant seen
	kernel    bool                // this host's kernel arbitrated the run's locks (a local file system)
	maxUnc    int64
	silences  []Silence       // the nodes' silences, by start
	seen      map[int64]int64 // while the model is built: locker id → the latest instant it recorded itself
}

func (a *Analyzer) model() *model {
	if a.m != nil && !a.dirty {
		return a.m
	}
	a.m = buildModel(a.order, false)
	a.dirty = false
	return a.m
}

// buildModel builds the event model of spans and its indexes. With release, each span is let go
// (spans[i] = nil) once it is in the model.
func buildModel(spans []*tracefile.Span, release bool) *model {
	m := newModel()
	for i, s := range spans {
		if release {
			spans[i] = nil
		}
		m.add(s)
	}
	m.index()
	return m
}

func newModel() *model {
	return &model{
		byID:      map[int64]*Locker{},
		byLocker:  map[int64][]*Attempt{},
		holdsOf:   map[int64][]*Hold{},
		holdsFile: map[string][]*Hold{},
		obs:       []Observation{},
		states:    []ProcState{},
		plocks:    []ProcLock{},
		seen:      map[int64]int64{},
	}
}

// add takes one span into the model. It keeps nothing of s but strings and values copied out
// of it: a streamed span's room is reused once add returns.
func (m *model) add(s *tracefile.Span) {
	m.note(s.Start)
	m.note(s.End)
	m.sighting(s, m.seen)
	switch s.Name {
	case semconv.SpanRun:
		m.run = *runOf(s)
	case semconv.SpanLocker:
		l := processOf(s)
		m.lockers = append(m.lockers, l)
		m.byID[l.ID] = l
	case semconv.SpanObserver:
		l := processOf(s)
		l.Role = "observer"
		m.observers = append(m.observers, l)
		m.obs = append(m.obs, observationsOf(s, l.ID, l.Node)...)
	case semconv.SpanSnapshot:
		st, pl := snapshotOf(s)
		m.states = append(m.states, st...)
		m.plocks = append(m.plocks, pl...)
		m.snapAt = s.Start
		m.snapNode = attrStr(s, semconv.Node)
		if m.snapNode == "" {
			m.snapNode = attrStr(s, semconv.HostName)
		}
	case semconv.SpanAcquire:
		m.attChunks = appendChunk(m.attChunks, attemptOf(s))
	case semconv.SpanHold:
		m.holdChunks = appendChunk(m.holdChunks, holdOf(s))
	case semconv.SpanGetlk:
		m.getlks = append(m.getlks, getlkOf(s))
	case semconv.SpanSilence:
		m.silences = append(m.silences, silenceOf(s))
	}
	for _, e := range s.Events {
		m.note(e.Time)
	}
}

// index sorts what add gathered and builds the model's indexes: the model is complete after.
func (m *model) index() {
	seen := m.seen
	m.seen = nil
	sort.Slice(m.lockers, func(i, j int) bool { return m.lockers[i].ID < m.lockers[j].ID })
	sortSilences(m.silences)
	for _, l := range m.lockers {
		l.lastSeen = seen[l.ID]
	}
	m.fs = semanticsOf(append(slices.Clone(m.lockers), m.observers...))
	m.kernel = kernelArbitrated(m.lockers)
	m.sem = m.fs.lock()
	sort.Slice(m.observers, func(i, j int) bool { return m.observers[i].ID > m.observers[j].ID })
	m.attempts = gather(m.attChunks, attemptCmp)
	m.holds = gather(m.holdChunks, holdCmp)
	sort.Slice(m.getlks, func(i, j int) bool {
		if m.getlks[i].At != m.getlks[j].At {
			return m.getlks[i].At < m.getlks[j].At
		}
		return m.getlks[i].ID < m.getlks[j].ID
	})
	sort.Slice(m.obs, func(i, j int) bool {
		x, y := m.obs[i], m.obs[j]
		if x.At != y.At {
			return x.At < y.At
		}
		if x.Observer != y.Observer {
			return x.Observer > y.Observer
		}
		return x.QueryMode+x.File < y.QueryMode+y.File
	})
	sort.Slice(m.states, func(i, j int) bool {
		if m.states[i].Locker != m.states[j].Locker {
			return m.states[i].Locker < m.states[j].Locker
		}
		return m.states[i].At < m.states[j].At
	})
	sort.Slice(m.plocks, func(i, j int) bool {
		if m.plocks[i].At != m.plocks[j].At {
			return m.plocks[i].At < m.plocks[j].At
		}
		return m.plocks[i].ID < m.plocks[j].ID
	})
	sort.Slice(m.lockers, func(i, j int) bool {
		if m.lockers[i].ID != m.lockers[j].ID {
			return m.lockers[i].ID < m.lockers[j].ID
		}
		return m.lockers[i].SpanID < m.lockers[j].SpanID
	})
	m.cutAtExit()
	m.indexPIDs()
	for i, at := range m.attempts {
		at.idx = i
		m.byLocker[at.Locker] = append(m.byLocker[at.Locker], at)
	}
	for _, h := range m.holds {
		m.holdsOf[h.Locker] = append(m.holdsOf[h.Locker], h)
		m.holdsFile[h.File] = append(m.holdsFile[h.File], h)
	}
	m.indexHoldEnds()
	m.mapOwners() // after the holds: a pid shared across nodes names the locker that held the lock
	m.obsRuns = map[string][]obsRun{}
	open := map[string]int{} // observer/query/file → index in obsRuns[file]
	for _, o := range m.obs {
		k := fmt.Sprint(o.Observer, "/", o.QueryMode, "/", o.File)
		if i, ok := open[k]; ok {
			m.obsRuns[o.File][i].to = o.At
		}
		open[k] = len(m.obsRuns[o.File])
		m.obsRuns[o.File] = append(m.obsRuns[o.File], obsRun{o: o})
	}
	for _, l := range m.lockers {
		if l.Uncertainty > m.maxUnc {
			m.maxUnc = l.Uncertainty
		}
	}
}

// Attempts and holds are kept in chunks as they come, and the model and the Result point into
// them in order (gather): appending to one growing block copied it again and again (growslice
// was a tenth of `analyze` at 10^6 events), and putting them into one block at the end held
// both copies at once (the peak of its memory); streamed spans also come in the order they
// ended, which a stable sort of the values would move 232-byte values for.

// appendChunk appends v to the last chunk, starting a new one when it is full; chunks grow
// from 64 to 8192 values, so that a small model (the live Check's) stays small.
func appendChunk[T any](chunks [][]T, v T) [][]T {
	if n := len(chunks); n == 0 || len(chunks[n-1]) == cap(chunks[n-1]) {
		size := 64
		if n > 0 {
			size = min(8192, 2*cap(chunks[n-1]))
		}
		chunks = append(chunks, make([]T, 0, size))
	}
	last := &chunks[len(chunks)-1]
	*last = append(*last, v)
	return chunks
}

// gather returns pointers to the chunks' values, sorted stably by cmp.
func gather[T any](chunks [][]T, cmp func(x, y *T) int) []*T {
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	ptrs := make([]*T, 0, n)
	for _, c := range chunks {
		for i := range c {
			ptrs = append(ptrs, &c[i])
		}
	}
	if !slices.IsSortedFunc(ptrs, cmp) {
		slices.SortStableFunc(ptrs, cmp)
	}
	return ptrs
}

func attemptCmp(x, y *Attempt) int {
	if c := cmp.Compare(x.Begin, y.Begin); c != 0 {
		return c
	}
	return cmp.Compare(x.ID, y.ID)
}

func holdCmp(x, y *Hold) int {
	if c := cmp.Compare(x.Begin, y.Begin); c != 0 {
		return c
	}
	return cmp.Compare(x.ID, y.ID)
}

// cutAtExit ends what a dead locker still had open no later than its death. The controller
// learns of a death when it reaps the process, and writes that instant as the end of the spans
// the locker never ended — but the kernel releases a process's locks as it dies, before its
// parent can reap it, and on a file system this kernel arbitrates it may have granted them to a
// waiter already (the gap was 13–47 µs, and the exclusion check saw a violation). So the death
// lies between the locker's last record of its own and the reaping, and there, on such a file
// system, no later than the first conflicting grant the kernel made: a hold of the dead locker
// ends there. A grant that came before the locker's last record of its own found it alive and
// holding, and stays a violation.
func (m *model) cutAtExit() {
	for _, at := range m.attempts {
		if l, ok := m.byID[at.Locker]; ok && l.Exited && (at.End == 0 || at.End > l.ExitAt) && at.Begin <= l.ExitAt {
			at.End = l.ExitAt
		}
	}
	for _, h := range m.holds {
		l, ok := m.byID[h.Locker]
		if !ok || !l.Exited {
			continue
		}
		death := l.ExitAt
		if m.kernel {
			// Only a grant before the hold's own end (or the death) can cut it: looking no
			// further keeps this linear in the holds, where a search to the next conflicting
			// grant of every hold was quadratic when there is none (lockers on bytes of their
			// own: 10^5 holds, 6 s).
			until := death
			if h.End != 0 && h.End < until {
				until = h.End
			}
			if g, ok := m.firstConflictingGrant(h, max(h.Begin, l.lastSeen), until); ok && g < death {
				death = g
			}
		}
		if (h.End == 0 || h.End > death) && h.Begin <= death {
			h.End = death
			h.How = semconv.HoldExit
		}
	}
}

// firstConflictingGrant is the first instant in [from, until) at which another locker was
// granted a lock that conflicts with h.
func (m *model) firstConflictingGrant(h *Hold, from, until int64) (int64, bool) {
	i := sort.Search(len(m.holds), func(i int) bool { return m.holds[i].Begin >= from })
	for _, x := range m.holds[i:] {
		if x.Begin >= until {
			break
		}
		if x.Locker != h.Locker && x.File == h.File && m.sem.Conflict(h.Request, x.Request) {
			return x.Begin, true
		}
	}
	return 0, false
}

// sighting notes the instants of s that its locker recorded itself: its start, its events and
// its end — but not what the controller wrote for it (a locker.exit event, the end of a span
// the locker never ended).
func (m *model) sighting(s *tracefile.Span, seen map[int64]int64) {
	if attrStr(s, semconv.LockerRole) != "locker" {
		return
	}
	id := attrInt(s, semconv.LockerID, -1)
	last := max(seen[id], s.Start)
	if s.End > 0 && s.Attrs.Str(semconv.ClosedBy) == "" {
		last = max(last, s.End)
	}
	for _, e := range s.Events {
		if e.Name != semconv.EventExit {
			last = max(last, e.Time)
		}
	}
	seen[id] = last
}

// kernelArbitrated says whether this host's kernel arbitrated every locker's file.
func kernelArbitrated(lockers []*Locker) bool {
	for _, l := range lockers {
		if !lockmodel.KernelArbitrated(l.Facts[semconv.FSType]) {
			return false
		}
	}
	return len(lockers) > 0
}

// obsRun is an observer's answer and the instant it changed again (0: never).
type obsRun struct {
	o  Observation
	to int64
}

func (m *model) note(t int64) {
	if t > m.last {
		m.last = t
	}
}

// locker returns the locker of that id, or a stand-in when the trace lacks its span.
func (m *model) locker(id int64) *Locker {
	if l, ok := m.byID[id]; ok {
		return l
	}
	return &Locker{ID: id, Role: "locker", Facts: map[string]string{}}
}

// attemptAt returns the locker's attempt open at t, or nil. A locker runs its commands one after
// the other, so at most one is open.
func (m *model) attemptAt(locker, t int64) *Attempt {
	list := m.byLocker[locker]
	i := sort.Search(len(list), func(i int) bool { return list[i].Begin > t })
	for j := i - 1; j >= 0 && j >= i-4; j-- {
		if attemptOpen(list[j], t) {
			return list[j]
		}
	}
	return nil
}

// attemptOpen reports whether an attempt is still waiting at t. An attempt that ended blocked at
// the run's end is waiting at that end instant too.
func attemptOpen(a *Attempt, t int64) bool {
	if a.Begin > t {
		return false
	}
	if a.End == 0 || t < a.End {
		return true
	}
	return t == a.End && (a.Outcome == semconv.OutcomeBlocked || a.Outcome == semconv.OutcomeWaiting)
}

// holdOpen reports whether a hold is held at t; a hold cut by the run's end is held at that end.
func holdOpen(h *Hold, t int64) bool {
	if h.Begin > t {
		return false
	}
	if h.End == 0 || t < h.End {
		return true
	}
	return t == h.End && (h.How == semconv.HoldRunEnd || h.How == semconv.HoldOpen)
}

// conflictAt returns the index of the attempt's latest conflict observation at or before t, or -1.
func conflictAt(a *Attempt, t int64) int {
	i := sort.Search(len(a.Conflicts), func(i int) bool { return a.Conflicts[i].At > t })
	return i - 1
}

// holdsAt returns the holds on file open at t that conflict with the request and belong to
// another locker.
func (m *model) holdsAt(a *Attempt, t int64) []*Hold {
	var out []*Hold
	list := m.holdsFile[a.File]
	n := sort.Search(len(list), func(i int) bool { return list[i].Begin > t })
	for _, h := range list[:n] {
		if h.Locker == a.Locker || !holdOpen(h, t) {
			continue
		}
		if m.sem.Conflict(a.Request, h.Request) {
			out = append(out, h)
		}
	}
	return out
}

// exitedBy reports whether the locker's process had ended by t.
func (m *model) exitedBy(id, t int64) bool {
	l, ok := m.byID[id]
	return ok && l.Exited && l.ExitAt <= t
}

// uncertainty returns the clock bound of a locker.
func (m *model) uncertainty(id int64) int64 {
	if l, ok := m.byID[id]; ok {
		return l.Uncertainty
	}
	return 0
}

// stuck is the StuckAfter the detectors use.
func (a *Analyzer) stuck() int64 {
	if a.opts.Immediate {
		return 0
	}
	return int64(a.opts.StuckAfter)
}

func (a *Analyzer) settle(m *model) int64 {
	if a.opts.Settle > 0 {
		return int64(a.opts.Settle)
	}
	if m.run.PollNS > 0 {
		return m.run.PollNS
	}
	return int64(lockmodel.DefaultPoll)
}
