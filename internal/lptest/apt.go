package lptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Install makes sure every one of tools is on PATH. When some are not, it runs `apt-get update`
// and `apt-get install -y packages...` (Debian's packages; root needed) while holding an
// exclusive flock on lockPath: test binaries of several packages may get here at once, and
// apt-get fails on dpkg's lock rather than wait for another apt-get of ours. It returns the
// tools still missing afterwards in the error.
func Install(ctx context.Context, lockPath string, packages, tools []string) error {
	if len(Missing(tools)) == 0 {
		return nil
	}
	unlock, err := LockFile(ctx, lockPath)
	if err != nil {
		return err
	}
	defer unlock()
	if len(Missing(tools)) == 0 {
		return nil // installed by whoever held the lock
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update"},
		append([]string{"install", "-y", "-o", "DPkg::Lock::Timeout=300"}, packages...),
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 2000))
		}
	}
	if miss := Missing(tools); len(miss) > 0 {
		return fmt.Errorf("%s installed but %s not on PATH", strings.Join(packages, " "), strings.Join(miss, ", "))
	}
	return nil
}

// Missing returns the tools not found on PATH.
func Missing(tools []string) []string {
	var miss []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return miss
}

// LockFile takes an exclusive flock on path (created if need be), polling so that ctx can end
// the wait, and returns the function that releases it.
func LockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
