package host

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestRealLocks takes a write lock in one child and blocks a second child
// behind it, then checks what /proc/locks, fdinfo and the waiter's thread
// state say, for each lock kind.
func TestRealLocks(t *testing.T) {
	tests := []struct {
		kind, class string
		// ownerPID tells whether /proc/locks shows the owner's pid;
		// OFD locks belong to an open file description and show -1.
		ownerPID bool
	}{
		{"posix", "POSIX", true},
		{"ofd", "OFDLCK", false},
		{"flock", "FLOCK", true},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lockfile")
			if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			id, err := StatFile(path)
			if err != nil {
				t.Fatal(err)
			}
			holder := startChild(t, tc.kind, "holder", path)
			waiter := startChild(t, tc.kind, "waiter", path)
			var groups []LockGroup
			waitForWaiters := func(n int) {
				waitFor(t, fmt.Sprintf("%d waiter lines in /proc/locks", n), func() bool {
					entries, err := ReadLocks()
					if err != nil {
						t.Fatal(err)
					}
					groups = GroupLocks(FilterFile(entries, id))
					return len(groups) == 1 && len(groups[0].Waiters) == n
				})
			}
			waitForWaiters(1)
			// A second writer conflicts with the first waiter too: since
			// Linux 5.1 the kernel queues it behind that waiter, one level
			// deeper, instead of behind the holder.
			second := startChild(t, tc.kind, "waiter", path)
			waitForWaiters(2)
			for _, w := range groups[0].Waiters {
				t.Logf("waiter line: %s", w.Raw)
			}
			if w2 := groups[0].Waiters[1]; w2.Depth != 2 || w2.ParentLine != groups[0].Waiters[0].Line ||
				tc.ownerPID && w2.PID != second.pid {
				t.Errorf("second waiter = %+v, want depth 2 behind the first waiter, pid %d", w2, second.pid)
			}
			g := groups[0]
			t.Logf("holder: %s", g.Holder.Raw)
			t.Logf("waiter: %s", g.Waiters[0].Raw)
			wantHolder, wantWaiter := holder.pid, waiter.pid
			if !tc.ownerPID {
				wantHolder, wantWaiter = -1, -1
			}
			h, w := g.Holder, g.Waiters[0]
			if h.Class != tc.class || h.Mode != "WRITE" || h.PID != wantHolder || h.Waiter {
				t.Errorf("holder = %+v, want %s WRITE pid %d", h, tc.class, wantHolder)
			}
			if w.Class != tc.class || w.Mode != "WRITE" || w.PID != wantWaiter || !w.Waiter || w.Depth != 1 {
				t.Errorf("waiter = %+v, want %s WRITE pid %d depth 1", w, tc.class, wantWaiter)
			}
			if w.BlockedBy != h.ID || w.ParentLine != h.Line {
				t.Errorf("waiter blocked by id %d line %d, want holder id %d line %d", w.BlockedBy, w.ParentLine, h.ID, h.Line)
			}
			if h.File() != id || h.Start != 0 || h.End != EOF {
				t.Errorf("holder file %v range %d-%d, want %v 0-EOF", h.File(), h.Start, h.End, id)
			}

			// fdinfo names the OFD owner /proc/locks cannot.
			fl, err := FDLocks(holder.pid, holder.fd)
			if err != nil {
				t.Fatal(err)
			}
			if len(fl) != 1 || fl[0].Class != tc.class || fl[0].File() != id || fl[0].PID != wantHolder {
				t.Errorf("fdinfo locks of holder = %+v, want one %s lock on %v", fl, tc.class, id)
			}
			if fl, err := FDLocks(waiter.pid, waiter.fd); err != nil || len(fl) != 0 {
				t.Errorf("fdinfo locks of waiter = %+v, %v; want none", fl, err)
			}

			ps, err := ReadProcess(waiter.pid, waiter.tid)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("waiter thread: state %s wchan %q syscall %q notes %q", ps.State, ps.Wchan, ps.Syscall, ps.Notes)
			for _, f := range ps.Stack {
				t.Logf("  stack: %s", f)
			}
			if ps.State != "S" && ps.State != "D" {
				t.Errorf("waiter state %s, want S or D", ps.State)
			}
			if !ps.BlockedInLocks() {
				t.Errorf("waiter wchan %q / stack %q do not show the lock code", ps.Wchan, ps.Stack)
			}
		})
	}
}
