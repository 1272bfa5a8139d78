package gluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// tools are the GlusterFS programs this package runs.
var tools = []string{"glusterd", "glusterfs", "gluster"}

// missingTools returns the tools not found on PATH.
func missingTools() []string {
	var miss []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return miss
}

// EnsureInstalled makes sure glusterd, glusterfs and gluster are on PATH.
// When they are not and noInstall is false it runs `apt-get update` and
// `apt-get install -y glusterfs-server` (Debian's package; root needed).
// The Debian package starts no daemon where systemd does not run, and this
// package never uses the system glusterd.
func EnsureInstalled(ctx context.Context, noInstall bool, log *slog.Logger) error {
	miss := missingTools()
	if len(miss) == 0 {
		return nil
	}
	if noInstall {
		return fmt.Errorf("%w: %s not installed (apt-get install glusterfs-server)", ErrUnavailable, strings.Join(miss, ", "))
	}
	if err := os.MkdirAll(BaseDir(), 0o755); err != nil {
		return fmt.Errorf("gluster base dir: %w", err)
	}
	// Test binaries of several packages may get here at once; apt-get
	// would fail on dpkg's lock rather than wait.
	unlock, err := lockFile(ctx, filepath.Join(BaseDir(), ".install.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if len(missingTools()) == 0 {
		return nil
	}
	start := time.Now()
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update"},
		{"install", "-y", "-o", "DPkg::Lock::Timeout=120", "glusterfs-server"},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 2000))
		}
	}
	if miss := missingTools(); len(miss) > 0 {
		return fmt.Errorf("glusterfs-server installed but %s not on PATH", strings.Join(miss, ", "))
	}
	log.Info("installed glusterfs-server", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
