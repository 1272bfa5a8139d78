package host

import (
	"os"
	"slices"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		in         string
		comm       string
		state      string
		ppid       int
		wantErrStr bool
	}{
		{in: "4711 (locker) S 1 4711 4711 0 -1 4194560 103 0", comm: "locker", state: "S", ppid: 1},
		{in: "4712 (a) (b) c) D 99 1 2", comm: "a) (b) c", state: "D", ppid: 99},
		{in: "4713 (sp ace) R 7 1", comm: "sp ace", state: "R", ppid: 7},
		{in: "4714 () Z 8", comm: "", state: "Z", ppid: 8},
		{in: "4715 locker S 1", wantErrStr: true},
		{in: "4716 (x) SS 1", wantErrStr: true},
		{in: "4717 (x) S", wantErrStr: true},
		{in: "4718 (x) S y", wantErrStr: true},
		{in: "4719 )x( S 1", wantErrStr: true},
	}
	for _, tc := range tests {
		var ps ProcState
		err := parseStat(tc.in, &ps)
		if tc.wantErrStr {
			if err == nil {
				t.Errorf("parseStat(%q) = %+v, want an error", tc.in, ps)
			}
			continue
		}
		if err != nil || ps.Comm != tc.comm || ps.State != tc.state || ps.PPID != tc.ppid {
			t.Errorf("parseStat(%q) = %q %s %d, %v; want %q %s %d", tc.in, ps.Comm, ps.State, ps.PPID, err, tc.comm, tc.state, tc.ppid)
		}
	}
}

func TestParseStack(t *testing.T) {
	in := "[<0>] fcntl_setlk+0x1a2/0x3c0\n[<0>] do_fcntl+0x6be/0x850\n\n[<ffffffff81000000>] x+0x1/0x2\nplain\n"
	want := []string{"fcntl_setlk+0x1a2/0x3c0", "do_fcntl+0x6be/0x850", "x+0x1/0x2", "plain"}
	if got := parseStack(in); !slices.Equal(got, want) {
		t.Errorf("parseStack = %q, want %q", got, want)
	}
}

func TestBlockedInLocks(t *testing.T) {
	for _, tc := range []struct {
		ps   ProcState
		want bool
	}{
		{ProcState{Wchan: "fcntl_setlk"}, true},
		{ProcState{Wchan: "0", Stack: []string{"locks_lock_inode_wait+0x82/0x180", "__do_sys_flock+0x1a3/0x1e0"}}, true},
		{ProcState{Wchan: "do_nanosleep", Stack: []string{"hrtimer_nanosleep+0x1/0x2"}}, false},
		{ProcState{Wchan: "__mutex_lock"}, false},
	} {
		if got := tc.ps.BlockedInLocks(); got != tc.want {
			t.Errorf("%+v BlockedInLocks = %v, want %v", tc.ps, got, tc.want)
		}
	}
}

func TestReadProcessSelf(t *testing.T) {
	pid := os.Getpid()
	ps, err := ReadProcess(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ps.TID != pid || ps.PPID != os.Getppid() || ps.Comm == "" || ps.State == "" {
		t.Errorf("ReadProcess(self) = %+v", ps)
	}
	threads, err := ReadThreads(pid)
	if err != nil || len(threads) == 0 {
		t.Fatalf("ReadThreads(self) = %d threads, %v", len(threads), err)
	}
	if _, err := ReadProcess(pid, 1<<30); err == nil {
		t.Error("ReadProcess of a missing thread: no error")
	}
}
