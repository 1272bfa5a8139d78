// Command tracefloor runs a program under one of lockprobe's tracers with a handler that does
// nothing: what tracing alone costs, with no recording. BenchmarkExecOverhead runs it beside the
// bare program and `lockprobe exec` in the same run, so that the recorder's share of exec's
// overhead and the tracer's own floor are measured, not assumed.
//
//	tracefloor -tracer ptrace|ebpf -- PROGRAM ARGS...
//
// It prints "events N" (the events the tracer delivered) on stderr when the program has ended.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/progexec"
	"github.com/lockprobe/lockprobe/ptracer"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		// A copy's side: argv is -child TRACER PATH ARGV0 ARGS..., as lockprobe's exec-child.
		err := progexec.ChildMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, "tracefloor:", err)
		os.Exit(127)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tracefloor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("tracefloor", flag.ContinueOnError)
	tracer := fs.String("tracer", "ptrace", "ptrace or ebpf")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prog := fs.Args()
	if len(prog) == 0 {
		return errors.New("want the program to run after --")
	}
	path, err := exec.LookPath(prog[0])
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	events := 0
	count := func(ptracer.Event) { events++ }
	switch *tracer {
	case "ptrace":
		tr, err := ptracer.Start(context.Background(), ptracer.Options{Program: path, Args: prog[1:],
			Helper: []string{self, "-child", "ptrace"}, Stdout: os.Stdout, Stderr: os.Stderr}, count)
		if err != nil {
			return err
		}
		if err := tr.Wait(); err != nil {
			return err
		}
	case "ebpf":
		tr, err := ebpftracer.Start(context.Background(), ebpftracer.Options{Program: path, Args: prog[1:],
			Helper: []string{self, "-child", "ebpf"}, Stdout: os.Stdout, Stderr: os.Stderr}, count)
		if err != nil {
			return err
		}
		err = tr.Wait()
		if n := tr.Lost(); n > 0 {
			fmt.Fprintln(os.Stderr, "lost", n)
		}
		tr.Close()
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("-tracer %q: want ptrace or ebpf", *tracer)
	}
	fmt.Fprintln(os.Stderr, "events", events)
	return nil
}
