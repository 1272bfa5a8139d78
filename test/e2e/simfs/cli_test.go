package simfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadInput: every bad flag is refused with one line naming what was wrong, exit status 2,
// and nothing mounted.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the lockprobe binary")
	}
	if skip != "" {
		t.Skip(skip)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-nodes", "2"}, "-mount DIR is required"},
		{[]string{"-mount", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"-mount", dir, "-nodes", "0"}, "-nodes 0"},
		{[]string{"-mount", dir, "-nodes", "65"}, "-nodes 65"},
		{[]string{"-mount", dir, "-mode", "global"}, `unknown mode "global"`},
		{[]string{"-mount", dir, "-detect", "maybe"}, `unknown deadlock detection "maybe"`},
		{[]string{"-mount", dir, "-fault", "drop-grants"}, `unknown kind "drop-grants"`},
		{[]string{"-mount", dir, "-fault", "evict:node=1"}, "evict needs after=DURATION or on=block"},
		{[]string{"-mount", dir, "-fault", "delay-grant:d=soon"}, `d="soon" is not a duration`},
		{[]string{"-mount", dir, "-nodes", "2", "-fault", "drop-grant:node=2"}, "node 2 does not exist"},
		{[]string{"-mount", dir, "-mode", "localflock", "-fault", "ghost"}, "only mode flock"},
		{[]string{"-mount", dir, "-for", "-1s"}, "-for -1s"},
		{[]string{"-mount", dir, "extra"}, `unexpected argument "extra"`},
	} {
		cmd := exec.Command(bin, append([]string{"simfs"}, tc.args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("simfs %v: %v, want exit status 2", tc.args, err)
		}
		msg := strings.TrimSuffix(stderr.String(), "\n")
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("simfs %v: stderr %q, want one line with %q", tc.args, stderr.String(), tc.want)
		}
	}
	if left := simfsMounts(t, dir); len(left) > 0 {
		t.Errorf("bad input left mounts: %v", left)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("bad input left files in %s: %v", dir, entries)
	}
}

// TestFor: -for ends simfs by itself, unmounted.
func TestFor(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts simfs")
	}
	if skip != "" {
		t.Skip(skip)
	}
	dir := t.TempDir()
	start := time.Now()
	out, err := exec.Command(bin, "simfs", "-mount", dir, "-nodes", "3", "-for", "500ms").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "unmounted after") {
		t.Fatalf("simfs -for 500ms: %v\n%s", err, out)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("simfs -for 500ms ended after %s", d)
	}
	if left := simfsMounts(t, dir); len(left) > 0 {
		t.Errorf("mounts left after -for: %v", left)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("left in %s after -for: %v", dir, entries)
	}
}

// kill SIGKILLs the server: its mounts stay behind, dead.
func (s *server) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-s.done
	s.done <- err
}

// TestKilledAndCleanedUp: a SIGKILLed simfs leaves dead mounts (every call through them fails
// with ENOTCONN); `lockprobe simfs -cleanup` removes them; a new simfs on the same folder after
// another SIGKILL cleans up first and serves; a second simfs on a live one's folder is refused.
func TestKilledAndCleanedUp(t *testing.T) {
	s := startSimfs(t, 2)
	second := exec.Command(bin, "simfs", "-mount", s.dir, "-nodes", "2", "-for", "1s")
	if out, err := second.CombinedOutput(); err == nil || !strings.Contains(string(out), "running simfs") {
		t.Errorf("a second simfs on a live one's folder: %v, %s; want it refused", err, out)
	}
	s.kill(t)
	if n := len(simfsMounts(t, s.dir)); n != 2 {
		t.Fatalf("%d mounts after SIGKILL, want the 2 dead ones (else the test proves nothing)", n)
	}
	if _, err := os.Stat(filepath.Join(s.mounts[0], "f")); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat through a dead mount: %v, want ENOTCONN", err)
	}
	out, err := exec.Command(bin, "simfs", "-mount", s.dir, "-cleanup").CombinedOutput()
	if err != nil || strings.Count(string(out), "removed") != 3 {
		t.Fatalf("simfs -cleanup: %v\n%s\nwant 2 mounts and the socket removed", err, out)
	}
	if left := simfsMounts(t, s.dir); len(left) > 0 {
		t.Fatalf("mounts left after -cleanup: %v", left)
	}

	s2 := startSimfs(t, 2)
	s2.kill(t)
	start := time.Now()
	s3 := startSimfsIn(t, s2.dir, 2)
	t.Logf("a new simfs over the dead mounts served after %s", time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(filepath.Join(s3.mounts[1], "after"), []byte("x"), 0o644); err != nil {
		t.Errorf("the new simfs does not serve: %v", err)
	}
}
