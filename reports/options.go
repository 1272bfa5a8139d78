package reports

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
)

// File names WriteAll writes into Options.OutDir.
const (
	HTMLFile    = "report.html"
	VerdictFile = "verdict.json"
	DOTFile     = "waitfor.dot"
)

// Options say what the analysis cannot know about the run. Every field is optional.
type Options struct {
	OutDir           string        // where the files go (report.html, verdict.json, waitfor.dot)
	Version          string        // lockprobe's version
	DetectionLatency time.Duration // online: cycle formed → detected; 0 = not detected online
	EndReason        string        // done | timeout | hang | interrupted; empty: what the trace says
	Killed           []string      // lockers killed at the end ("locker 3 (pid 4711)")
	Unresponsive     []string      // lockers that did not answer at the end
	Color            bool          // the terminal summary may use ANSI colours
}

// WriteAll writes report.html, verdict.json and waitfor.dot into opts.OutDir (created if
// missing). Each file is written to a temporary name and renamed, so a reader never sees half a
// report. It returns the first error but still tries the other files.
func WriteAll(res *analysis.Result, opts Options) error {
	dir := opts.OutDir
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create report folder: %w", err)
	}
	return errors.Join(
		writeFile(filepath.Join(dir, HTMLFile), func(w io.Writer) error { return HTML(w, res, opts) }),
		writeFile(filepath.Join(dir, VerdictFile), func(w io.Writer) error { return JSON(w, res, opts) }),
		writeFile(filepath.Join(dir, DOTFile), func(w io.Writer) error { return DOT(w, res) }),
	)
}

func writeFile(path string, render func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	// 0600: the reports name hosts, mounts, pids and kernel stacks; their owner decides whom
	// to give them to. A file that could not be written whole (a full disk) is removed.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
