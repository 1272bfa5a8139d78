package probe

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/proto"
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
	l := &Locker{rec: newRecorder(func(item) {})}
	e := &executor{l: l}
	file := host.FileID{Major: 1, Minor: 2, Inode: 3}
	other := host.FileID{Major: 1, Minor: 2, Inode: 4}
	e.holds = []*hold{
		{kind: semconv.KindPOSIX, mode: semconv.ModeRead, start: 0, end: 100, slot: 0, file: file},
		{kind: semconv.KindPOSIX, mode: semconv.ModeRead, start: 0, end: math.MaxInt64, slot: 1, file: other},
		{kind: semconv.KindOFD, mode: semconv.ModeRead, start: 0, end: 100, slot: 0, file: file},
	}
	for _, h := range e.holds {
		h.span = l.rec.startHold(h, 0, time.Unix(0, 1))
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

// TestClassify checks that the locker names conflict owners by the one owner rule: its own lock
// thread is itself (FUSE file systems report the thread that locked), a pid of its node wins, a
// pid two other nodes share is unknown, and one nobody has is foreign on this node.
func TestClassify(t *testing.T) {
	l := &Locker{opts: Options{ID: 1, Role: "locker"}, node: "n1", pid: 10, thread: &lockThread{tid: 11}}
	e := &executor{l: l, peers: l.peerTable([]proto.Peer{
		{LockerID: 0, Node: "n1", PID: 20, TID: 21},
		{LockerID: 2, Node: "n2", PID: 30},
		{LockerID: 3, Node: "n3", PID: 30},
		{LockerID: 4, Node: "n2", PID: 20},
	})}
	tests := []struct {
		pid    int
		class  semconv.OwnerClass
		locker int
		node   string
	}{
		{10, semconv.OwnerSelf, 1, "n1"},
		{11, semconv.OwnerSelf, 1, "n1"},
		{20, semconv.OwnerLocker, 0, "n1"},
		{21, semconv.OwnerLocker, 0, "n1"},
		{30, semconv.OwnerUnknown, -1, ""},
		{99, semconv.OwnerForeign, -1, "n1"},
		{0, semconv.OwnerUnknown, -1, ""},
	}
	for _, tt := range tests {
		o := owner{pid: tt.pid, mode: semconv.ModeWrite, lockerID: -1}
		e.classify(&o, nil)
		if o.class != tt.class || o.lockerID != tt.locker || o.node != tt.node {
			t.Errorf("pid %d: %s locker %d node %q, want %s locker %d node %q", tt.pid, o.class, o.lockerID, o.node, tt.class, tt.locker, tt.node)
		}
	}
}
