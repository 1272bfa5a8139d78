//go:build !lockeronly

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/scenario"
	"github.com/lockprobe/lockprobe/tracefile"
)

func analyzeCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	stuckAfter := fs.Duration("stuck-after", analysis.DefaultStuckAfter, "a waiter blocked this long under suspicious evidence is reported stuck")
	out := fs.String("out", "", "where to write the reports (default: the run's folder, or beside the trace file)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one argument: a run's output folder or its trace file")
	}
	if *stuckAfter <= 0 {
		return usagef("-stuck-after must be positive")
	}
	path, err := tracePath(fs.Arg(0))
	if err != nil {
		return err
	}
	opts := analysis.Options{StuckAfter: *stuckAfter}
	b := analysis.NewBuilder(opts)
	t, err := tracefile.StreamFile(path, tracefile.StreamOptions{Release: analysis.Streamed, Done: b.Add})
	if errors.Is(err, tracefile.ErrLate) {
		b = nil // a span streamed too early: the whole file, merged, is what counts
		t, err = tracefile.Open(path)
	}
	if err != nil {
		return usagef("%v", err)
	}
	if len(t.Spans) == 0 && t.Streamed == 0 {
		// Nothing to judge is no verdict of health: say what the file is instead.
		what := "no span in it"
		if t.Truncated {
			what += " (it ends inside a record: not a lockprobe trace, or cut short)"
		}
		return usagef("%s: %s", path, what)
	}
	var res *analysis.Result
	if b != nil {
		res = b.Finish(t)
	} else {
		res = analysis.Consume(t, opts) // the trace is let go as the model is built
	}
	dir := *out
	if dir == "" {
		dir = filepath.Dir(path)
	}
	if err := writeReports(res, reportOptions{outDir: dir}, stdout); err != nil {
		return err
	}
	if res.Verdict.Exit != 0 {
		return &exitError{code: res.Verdict.Exit}
	}
	return nil
}

// tracePath accepts a run's output folder or a trace file.
func tracePath(arg string) (string, error) {
	if _, err := os.Stat(arg); err != nil {
		return "", usagef("%s: %v", arg, errors.Unwrap(err))
	}
	p, err := tracefile.Find(arg)
	if err != nil {
		return "", usagef("%s: no %s in this folder", arg, tracefile.FileName)
	}
	return p, nil
}

func scenariosCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	show := fs.String("show", "", "print the source of this built-in")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *show != "" {
		sc, err := scenario.Builtin(*show)
		if err != nil {
			return usagef("%v", err)
		}
		fmt.Fprint(stdout, sc.Text)
		return nil
	}
	for _, info := range scenario.Builtins() {
		fmt.Fprintf(stdout, "%-10s %s\n", info.Name, info.Description)
	}
	return nil
}
