package gluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// tools are the GlusterFS programs this package runs.
var tools = []string{"glusterd", "glusterfs", "gluster"}

// EnsureInstalled makes sure glusterd, glusterfs and gluster are on PATH.
// When they are not and noInstall is false it installs Debian's
// glusterfs-server with apt-get (root needed). The Debian package starts no
// daemon where systemd does not run, and this package never uses the
// system glusterd.
func EnsureInstalled(ctx context.Context, noInstall bool, log *slog.Logger) error {
	miss := lptest.Missing(tools)
	if len(miss) == 0 {
		return nil
	}
	if noInstall {
		return fmt.Errorf("%w: %s not installed (apt-get install glusterfs-server)", ErrUnavailable, strings.Join(miss, ", "))
	}
	if err := os.MkdirAll(BaseDir(), 0o755); err != nil {
		return fmt.Errorf("gluster base dir: %w", err)
	}
	start := time.Now()
	if err := lptest.Install(ctx, filepath.Join(BaseDir(), ".install.lock"), []string{"glusterfs-server"}, tools); err != nil {
		return err
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
