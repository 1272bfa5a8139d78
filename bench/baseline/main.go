// Command baseline is the bare comparison program of lockprobe's benchmarks: N processes take
// and release a POSIX write lock on one file with plain fcntl F_SETLKW, F_UNLCK in a loop, and
// record the instants of every attempt, grant and release, with no tracing, no messages, no
// watcher. The benchmark computes the same figures from its output as from a lockprobe trace.
//
//	baseline -file F -procs N -cycles C [-hold D] [-pause D] [-start UNIXNS]
//
// prints one line per cycle: "locker attempt grant release" (unix ns, CLOCK_REALTIME, which
// every process on the host shares).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

type cycle struct{ attempt, grant, release int64 }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	file := fs.String("file", "", "the file to lock (created if missing)")
	procs := fs.Int("procs", 4, "number of locker processes")
	cycles := fs.Int("cycles", 100, "lock/unlock cycles per process")
	hold := fs.Duration("hold", 0, "how long each grant is held")
	pause := fs.Duration("pause", 0, "pause after each release")
	start := fs.Int64("start", 0, "unix ns instant all processes start at (default: now + 100ms)")
	child := fs.Int("child", -1, "internal: run as locker K")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || *procs < 1 || *cycles < 1 {
		return errors.New("need -file, -procs >= 1, -cycles >= 1")
	}
	if *start == 0 {
		*start = time.Now().Add(100 * time.Millisecond).UnixNano()
	}
	if *child >= 0 {
		return locker(*child, *file, *cycles, *hold, *pause, *start, stdout)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	// Children write to one pipe each; the parent copies their lines after they end, so that
	// printing never overlaps a lock cycle.
	cmds := make([]*exec.Cmd, *procs)
	outs := make([]*os.File, *procs)
	for k := range cmds {
		f, err := os.CreateTemp("", "baseline-*.txt")
		if err != nil {
			return fmt.Errorf("temp file: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		outs[k] = f
		cmds[k] = exec.Command(exe, "-file", *file, "-cycles", strconv.Itoa(*cycles), "-hold", hold.String(),
			"-pause", pause.String(), "-start", strconv.FormatInt(*start, 10), "-child", strconv.Itoa(k))
		cmds[k].Stdout, cmds[k].Stderr = f, os.Stderr
		if err := cmds[k].Start(); err != nil {
			return fmt.Errorf("start locker %d: %w", k, err)
		}
	}
	for k, c := range cmds {
		if err := c.Wait(); err != nil {
			return fmt.Errorf("locker %d: %w", k, err)
		}
	}
	w := bufio.NewWriter(stdout)
	for _, f := range outs {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
	}
	return w.Flush()
}

// locker is one process: wait for the start instant, then lock, hold, unlock, pause, C times.
// The instants go into a preallocated slice and are printed at the end.
func locker(k int, path string, cycles int, hold, pause time.Duration, start int64, stdout io.Writer) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	rec := make([]cycle, cycles)
	if d := time.Until(time.Unix(0, start)); d > 0 {
		time.Sleep(d)
	}
	wr := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	un := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0}
	for i := range rec {
		rec[i].attempt = time.Now().UnixNano()
		for {
			err := unix.FcntlFlock(uintptr(fd), unix.F_SETLKW, &wr)
			if err == nil {
				break
			}
			if err != unix.EINTR {
				return fmt.Errorf("F_SETLKW: %w", err)
			}
		}
		rec[i].grant = time.Now().UnixNano()
		if hold > 0 {
			time.Sleep(hold)
		}
		rec[i].release = time.Now().UnixNano()
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &un); err != nil {
			return fmt.Errorf("F_UNLCK: %w", err)
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	w := bufio.NewWriter(stdout)
	for _, c := range rec {
		fmt.Fprintf(w, "%d %d %d %d\n", k, c.attempt, c.grant, c.release)
	}
	return w.Flush()
}
