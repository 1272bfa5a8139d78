package lptest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// WriteOwner records this process (pid and start time, which together name it uniquely) in
// dir/owner: a harness that leaves daemons and mounts behind when its test process crashes
// tells with OwnerAlive a live run of another test binary from a crashed one.
func WriteOwner(dir string) error {
	st, err := procStartTime(os.Getpid())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(fmt.Sprintf("%d %d\n", os.Getpid(), st)), 0o644); err != nil {
		return fmt.Errorf("owner file: %w", err)
	}
	return nil
}

// OwnerAlive tells whether the process that wrote dir's owner file still runs.
func OwnerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err != nil {
		return false
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return false
	}
	st, err := procStartTime(pid)
	return err == nil && st == start
}

// procStartTime returns a process's start time in clock ticks since boot (field 22 of
// /proc/PID/stat).
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading stat of %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of %d: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("stat of %d: %d fields", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}
