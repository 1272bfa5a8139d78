package probe

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
)

// openTwice opens one temp file through two descriptors: OFD and flock locks belong to the open
// file description, so the two conflict inside one process — real lock semantics, no mock.
func openTwice(t *testing.T) (int, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var fds [2]int
	for i := range fds {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		fds[i] = fd
	}
	return fds[0], fds[1]
}

func TestBackendsConflictAndReport(t *testing.T) {
	for _, kind := range []semconv.Kind{semconv.KindOFD, semconv.KindFlock} {
		t.Run(kind.String(), func(t *testing.T) {
			a, b := openTwice(t)
			if err := setLock(a, lockReq{kind: kind, mode: semconv.ModeWrite, start: 0, len: 10}); err != nil {
				t.Fatalf("first lock: %v", err)
			}
			err := setLock(b, lockReq{kind: kind, mode: semconv.ModeRead, start: 5, len: 1})
			if o, errno := outcomeOf(err); o != semconv.OutcomeWouldBlock {
				t.Fatalf("conflicting try: outcome %s (%s), want would-block", o, errno)
			}
			if kind == semconv.KindOFD {
				fl, found, err := getLock(b, lockReq{kind: kind, mode: semconv.ModeRead, start: 5, len: 1})
				if err != nil || !found || fl.Pid != -1 || fl.Start != 0 || fl.Len != 10 || modeOfType(fl.Type) != semconv.ModeWrite {
					t.Errorf("F_OFD_GETLK: %+v found=%v err=%v; want write [0,10) pid -1", fl, found, err)
				}
			}
			if err := setLock(a, lockReq{kind: kind, start: 0, len: 10}); err != nil {
				t.Fatalf("unlock: %v", err)
			}
			if err := setLock(b, lockReq{kind: kind, mode: semconv.ModeRead, start: 5, len: 1}); err != nil {
				t.Errorf("lock after unlock: %v", err)
			}
		})
	}
}

func TestOutcomeOf(t *testing.T) {
	cases := []struct {
		err     error
		outcome semconv.Outcome
		name    string
	}{
		{nil, semconv.OutcomeGranted, ""},
		{unix.EAGAIN, semconv.OutcomeWouldBlock, "EAGAIN"},
		{unix.EACCES, semconv.OutcomeWouldBlock, "EACCES"},
		{unix.EDEADLK, semconv.OutcomeDeadlock, "EDEADLK"},
		{unix.ENOLCK, semconv.OutcomeError, "ENOLCK"},
		{errors.New("odd"), semconv.OutcomeError, "odd"},
	}
	for _, c := range cases {
		if o, n := outcomeOf(c.err); o != c.outcome || n != c.name {
			t.Errorf("outcomeOf(%v) = %s %s, want %s %s", c.err, o, n, c.outcome, c.name)
		}
	}
}

// TestCutSplitsHolds: unlocking or converting part of a held range ends that hold and reopens
// the parts outside the range, for the same owner only.
func TestCutSplitsHolds(t *testing.T) {
	l := &Locker{tracer: noop.NewTracerProvider().Tracer("test"), rootCtx: context.Background()}
	e := &executor{l: l}
	file := host.FileID{Major: 1, Minor: 2, Inode: 3}
	other := host.FileID{Major: 1, Minor: 2, Inode: 4}
	e.holds = []*hold{
		{kind: semconv.KindPOSIX, mode: semconv.ModeRead, start: 0, end: 100, slot: 0, file: file},
		{kind: semconv.KindPOSIX, mode: semconv.ModeRead, start: 0, end: math.MaxInt64, slot: 1, file: other},
		{kind: semconv.KindOFD, mode: semconv.ModeRead, start: 0, end: 100, slot: 0, file: file},
	}
	for _, h := range e.holds {
		_, h.span = l.tracer.Start(context.Background(), "h")
	}
	// A posix unlock of [10, 20) through another descriptor of the same file.
	n := e.cut(func(h *hold) bool { return h.sameOwner(semconv.KindPOSIX, 1, file) }, 10, 20, 1, semconv.HoldRelease)
	if n != 1 {
		t.Fatalf("touched %d holds, want 1", n)
	}
	type rng struct {
		kind       semconv.Kind
		start, end int64
		file       host.FileID
	}
	got := map[rng]bool{}
	for _, h := range e.holds {
		got[rng{h.kind, h.start, h.end, h.file}] = true
	}
	want := []rng{
		{semconv.KindPOSIX, 0, 10, file}, {semconv.KindPOSIX, 20, 100, file},
		{semconv.KindPOSIX, 0, math.MaxInt64, other}, {semconv.KindOFD, 0, 100, file},
	}
	if len(got) != len(want) {
		t.Fatalf("holds after cut: %v, want %v", got, want)
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing hold %+v after cut; have %v", w, got)
		}
	}
}
