package sampler

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/progrec"
	"github.com/lockprobe/lockprobe/ptracer"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// Options say what to watch. Files and OutDir are required.
type Options struct {
	Files []*File
	// PIDs limits the look to these processes. Optional: every process with a file open.
	PIDs []int
	// For is how long to watch; 0 is one look. Every is the time between looks. Optional: 200 ms.
	For, Every time.Duration
	OutDir     string
	// CommandLine and Version go into the root span.
	CommandLine, Version string
	// EBPF also traces the lock calls of the processes the first look found (and of what they
	// fork) with eBPF, without stopping them: a process that polls with F_SETLK sits in no call
	// between its tries, so looks alone see it only by chance. Optional: looks only.
	EBPF bool
	// Log gets diagnostics. Optional.
	Log *slog.Logger
}

// Watch looks at the files until For has passed (or ctx ends) and writes what it saw as a
// trace: a process span per process seen (role program, its command line), a hold per lock
// /proc/locks showed it holding (from the first look that showed it to the last), an attempt
// per lock call a thread was seen blocked in with a lock.conflict event per change of what
// blocks it, the observer's F_GETLK answers, and at the end a snapshot. It returns the trace's
// path. Nothing is stopped or locked.
func Watch(ctx context.Context, o Options) (string, error) {
	if o.Every <= 0 {
		o.Every = 200 * time.Millisecond
	}
	path := filepath.Join(o.OutDir, tracefile.FileName)
	var paths []string
	for _, f := range o.Files {
		paths = append(paths, f.Path)
	}
	first, err := Take(o.Files, o.PIDs)
	if err != nil {
		return "", err
	}
	how := "sampled"
	if o.EBPF {
		how = "sampled+ebpf"
	}
	w, err := progrec.Create(path, progrec.RunInfo{Command: o.CommandLine, Scenario: "watch", Procs: len(first.Procs),
		Timeout: o.For, Poll: o.Every, Files: paths, Version: o.Version, Tracer: how}, first.At)
	if err != nil {
		return "", err
	}
	s := &state{w: w, procs: map[int]*progrec.Proc{}, holds: map[string]*seenSpan{}, waits: map[string]*seenSpan{},
		polls: map[string]*seenSpan{}, obsLast: map[string]string{}, files: o.Files}
	s.obs = w.StartObserver(-1, first.At)
	var calls *ptracer.Log // the eBPF tracer's events, read at each look
	if o.EBPF && len(first.Procs) > 0 {
		var pids []int
		for _, p := range first.Procs {
			pids = append(pids, p.PID)
		}
		calls = &ptracer.Log{}
		tr, err := ebpftracer.Start(ctx, ebpftracer.Options{Attach: pids, Log: o.Log}, calls.Add)
		if err != nil {
			_ = w.Close(first.At, "error")
			return "", err
		}
		defer func() {
			tr.Kill()
			<-tr.Done()
			tr.Close()
		}()
	}
	s.add(first)
	last := first
	deadline := first.At.Add(o.For)
	for o.For > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
			continue
		case <-time.After(min(o.Every, time.Until(deadline))):
		}
		l, err := Take(o.Files, o.PIDs)
		if err != nil {
			break // a watched pid ended: what was seen is the answer
		}
		s.tries(l, calls.Take())
		s.add(l)
		last = l
	}
	s.tries(last, calls.Take())
	s.finish(last)
	return path, w.Close(last.At, "done")
}

// seenSpan is a hold or an attempt seen in consecutive looks.
type seenSpan struct {
	span  *progrec.Span
	last  time.Time
	seen  bool // in the current look
	owner string
	ownAt time.Time
	p     *progrec.Proc
	lock  progrec.Lock
	style semconv.Style
	tries int
}

type state struct {
	w       *progrec.Writer
	procs   map[int]*progrec.Proc
	holds   map[string]*seenSpan
	waits   map[string]*seenSpan
	polls   map[string]*seenSpan // F_SETLK tries seen by eBPF, one poll attempt per request
	obs     *progrec.Observer
	obsLast map[string]string
	files   []*File
	nextID  int64
}

func (s *state) proc(l *Look, pid int) *progrec.Proc {
	if p := s.procs[pid]; p != nil {
		return p
	}
	argv := host.Cmdline(pid)
	if lp := l.Proc(pid); lp != nil {
		argv = lp.Argv
	}
	p := &progrec.Proc{ID: s.nextID, PID: pid, Argv: argv, Start: l.At}
	s.nextID++
	s.procs[pid] = p
	s.w.StartProc(p)
	return p
}

func (s *state) byPID(pid int) *progrec.Proc { return s.procs[pid] }

func (s *state) add(l *Look) {
	for _, p := range l.Procs {
		s.proc(l, p.PID)
	}
	for _, h := range s.holds {
		h.seen = false
	}
	for _, h := range l.Holders(s.files) {
		if h.PID <= 0 || h.File == nil {
			continue
		}
		p := s.proc(l, h.PID)
		e := h.Entry
		length := int64(0)
		if e.End != host.EOF {
			length = e.End - e.Start + 1
		}
		kind := map[string]semconv.Kind{"POSIX": semconv.KindPOSIX, "OFDLCK": semconv.KindOFD, "FLOCK": semconv.KindFlock}[e.Class]
		mode := semconv.ModeRead
		if e.Mode == "WRITE" {
			mode = semconv.ModeWrite
		}
		key := fmt.Sprint(h.PID, e.Class, e.Mode, e.Start, e.End, e.File())
		x := s.holds[key]
		if x == nil {
			lk := progrec.Lock{Kind: kind, Mode: mode, Start: e.Start, Len: length, Path: h.File.Path, FD: -1}
			x = &seenSpan{span: s.w.StartHold(p, lk, l.At, nil), p: p, lock: lk}
			s.holds[key] = x
		}
		x.seen, x.last = true, l.At
	}
	for key, h := range s.holds {
		if !h.seen {
			// Gone since the last look: it ended between the two; the hold recorded ends at
			// the last look that showed it, inside the real one.
			s.w.EndHold(h.span, h.last, semconv.HoldRelease, -1, 0)
			delete(s.holds, key)
		}
	}
	for _, x := range s.waits {
		x.seen = false
	}
	for _, lp := range l.Procs {
		p := s.proc(l, lp.PID)
		for _, pd := range lp.Pending {
			c := pd.Call
			key := fmt.Sprint(lp.PID, pd.TID, c.Text())
			x := s.waits[key]
			if x == nil {
				lk := progrec.Lock{Kind: c.Kind, Mode: c.Mode, Start: c.Start, Len: c.Len, Path: pd.File.Path, FD: c.FD, TID: pd.TID, Text: c.Text()}
				x = &seenSpan{span: s.w.StartAttempt(p, lk, c.Style(), l.At), p: p, lock: lk, style: c.Style()}
				s.waits[key] = x
			}
			x.seen, x.last = true, l.At
			if k := pd.Owner.Key(); k != x.owner || l.At.Sub(x.ownAt) >= 2*time.Second {
				x.owner, x.ownAt = k, l.At
				s.w.Event(x.span, l.At, semconv.EventConflict, progrec.OwnerAttrs(pd.Owner, p, s.byPID, s.w.Host()))
			}
		}
	}
	for key, x := range s.waits {
		if x.seen {
			continue
		}
		// The call returned between two looks: granted if a matching hold showed up.
		outcome := semconv.OutcomeError
		for _, h := range s.holds {
			if h.p == x.p && h.lock.Mode == x.lock.Mode && h.lock.Start == x.lock.Start && h.lock.Len == x.lock.Len {
				outcome = semconv.OutcomeGranted
			}
		}
		s.w.EndAttempt(x.span, x.last, x.style, outcome, "", 1)
		delete(s.waits, key)
	}
	for _, ob := range l.Observed {
		key := ob.File.Path + "/" + ob.Mode.String()
		if k := ob.Owner.Key(); k != s.obsLast[key] {
			s.obsLast[key] = k
			attrs := append(progrec.OwnerAttrs(ob.Owner, nil, s.byPID, s.w.Host()),
				progrec.Str(semconv.QueryMode, ob.Mode.String()), progrec.Str(semconv.FileLogical, ob.File.Path))
			s.w.Observed(s.obs, l.At, attrs)
		}
	}
}

// finish ends what is still open at the last look: waiters blocked, holds run-end, and takes
// the snapshot.
func (s *state) finish(l *Look) {
	var procs []*progrec.Proc
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].PID < procs[j].PID })
	files := progrec.Files{}
	for _, f := range s.files {
		files[f.ID] = f.Path
	}
	s.w.TakeSnapshot(l.At, procs, files)
	for _, x := range s.waits {
		s.w.EndAttempt(x.span, l.At, x.style, semconv.OutcomeBlocked, "", 1)
	}
	for _, x := range s.polls {
		s.w.EndAttempt(x.span, l.At, semconv.StylePoll, semconv.OutcomeBlocked, "", x.tries)
	}
	for _, h := range s.holds {
		s.w.EndHold(h.span, l.At, semconv.HoldRunEnd, -1, 0)
	}
	for _, p := range procs {
		s.w.EndProc(p, l.At, false, "", "")
	}
	s.w.EndObserver(s.obs, l.At)
}
