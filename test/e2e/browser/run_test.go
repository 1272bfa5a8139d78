package browser

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// TestDeadlockRunReport opens the report of a real deadlock run: three lockers whose OFD read
// locks all upgrade to write at once, on a file in a temp dir, analysed and rendered by the
// lockprobe binary exactly as a user gets it.
func TestDeadlockRunReport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lockers and a browser")
	}
	bin := chromium(t)
	tmp := t.TempDir()
	lp, err := lptest.BuildLockprobe(tmp, lptest.Package)
	if err != nil {
		t.Fatal(err)
	}
	dir := outDir(t, "deadlock-run")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, lp, "run", "-file", filepath.Join(tmp, "lock-file"), "-scenario", "upgrade",
		"-lock", "ofd", "-procs", "3", "-out", dir)
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	err = run.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("lockprobe run: %v (want exit 3, deadlock)\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Fatal(err)
	}
	CheckReport(t, bin, dir, "Deadlock")
}
