// Command lockprobe proves why processes sharing a file through locks hang. It starts locker
// processes that take real locks on a real file, drives them with scheduled commands, records
// every attempt as OpenTelemetry spans, and says whether a hang is a deadlock, a lost wake-up,
// a stale or foreign holder, or broken mutual exclusion.
//
// This package only parses flags and wires the packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"

	"github.com/lockprobe/lockprobe/launch"
)

// version is set at build time with -ldflags "-X main.version=..." (make build does); a plain
// go build leaves it empty and init takes what the build recorded.
var version string

func init() {
	if version == "" {
		info, _ := debug.ReadBuildInfo()
		version = stampedVersion(info)
	}
}

// stampedVersion names a build by what go build recorded: the main module's version (from a
// tag, or a pseudo-version from the VCS stamp), else the VCS revision (-dirty when the work
// tree had changes), else "dev".
func stampedVersion(info *debug.BuildInfo) string {
	if info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Exit statuses (DESIGN.md): verdicts 0, 3, 4, 5 come from the analysis.
const (
	exitOK    = 0
	exitTool  = 1
	exitUsage = 2
)

// usageError marks bad input: a one-line message and exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries a verdict's exit status out of a command that otherwise succeeded.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

type command struct {
	run     func(args []string, stdout, stderr io.Writer) error
	summary string
}

// commands are the subcommands of this build: what a locker process needs (locker, version)
// and, in the full build, the rest (commands.go). The locker build (`go build -tags
// lockeronly`, installed as lockprobe-locker beside lockprobe) leaves out everything else and
// so the package inits of gRPC, pdata, go-fuse, cilium/ebpf and the rest, which every locker of
// a run used to pay at start-up (locker.go says how run picks it).
var commands = withOthers(map[string]command{
	"locker":  {lockerCmd, "run one locker or observer (started by run, or by hand on a remote node)"},
	"version": {versionCmd, "print the version"},
}, otherCommands)

func withOthers(base, others map[string]command) map[string]command {
	for name, c := range others {
		base[name] = c
	}
	return base
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		cmd, ok = hidden[args[0]]
	}
	if !ok {
		fmt.Fprintf(stderr, "lockprobe: unknown command %q (try: lockprobe help)\n", args[0])
		return exitUsage
	}
	stop := startProfile(args[0], stderr)
	err := cmd.run(args[1:], stdout, stderr)
	stop()
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "lockprobe %s: %s\n", args[0], ue.msg)
		return exitUsage
	case errors.Is(err, errHelp):
		return exitOK
	default:
		fmt.Fprintf(stderr, "lockprobe %s: %v\n", args[0], err)
		return exitTool
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: lockprobe COMMAND [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nlockprobe COMMAND -h shows the flags of a command.")
}

// versionLine is what `lockprobe version` prints first: run compares it with the locker build's
// (lockerbin.go).
func versionLine() string { return "lockprobe " + version }

func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	sum := fs.Bool("sum", false, "also print the SHA-256 of this binary (how a launcher tells that a node's copy is this build)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionLine())
	if *sum {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		h, err := launch.Sum(exe)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, launch.SumLine(h))
	}
	return nil
}
