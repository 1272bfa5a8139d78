// Command baseline holds the bare comparison programs of lockprobe's benchmarks: what the same
// work costs with nothing but the lock calls — no tracing, no messages, no watcher. The benchmark
// computes the same figures from their output as from a lockprobe trace, in the same run.
//
//	baseline -file F -procs N -cycles C [-own] [-hold D] [-pause D] [-start UNIXNS]
//	baseline -spread -file F -procs N -instants K [-every D] [-start UNIXNS]
//
// The first (cycles) is N processes taking and releasing a POSIX write lock on one file with
// plain fcntl F_SETLKW, F_UNLCK in a loop; it prints one line per cycle: "locker attempt grant
// release". With -own each process locks a byte of its own (byte K for process K) instead of the
// whole file, so that nobody waits: the bare pace of lockers that make records as fast as they
// can, the source of the span pipeline's flood. The second (-spread) is the floor of firing at one instant: N processes, each on a
// locked OS thread with 1 ns timer slack, wake at K shared instants with an absolute
// clock_nanosleep, stamp, take F_SETLK on their own byte, unlock and go straight back to sleep;
// it prints one line per instant and process: "locker instant stamp". Instants are unix ns,
// CLOCK_REALTIME, which every process on the host shares.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

type cycle struct{ attempt, grant, release int64 }

type config struct {
	file           string
	procs          int
	cycles         int
	hold, pause    time.Duration
	start          int64
	spread         bool
	own            bool
	instants       int
	every          time.Duration
	child          int
	childArguments []string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	var c config
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	fs.StringVar(&c.file, "file", "", "the file to lock (created if missing)")
	fs.IntVar(&c.procs, "procs", 4, "number of locker processes")
	fs.IntVar(&c.cycles, "cycles", 100, "lock/unlock cycles per process")
	fs.DurationVar(&c.hold, "hold", 0, "how long each grant is held")
	fs.DurationVar(&c.pause, "pause", 0, "pause after each release")
	fs.Int64Var(&c.start, "start", 0, "unix ns instant all processes start at (default: now + 100ms, + 1ms per process with -spread)")
	fs.BoolVar(&c.own, "own", false, "lock byte K (process K) instead of the whole file: no contention")
	fs.BoolVar(&c.spread, "spread", false, "the fire-spread floor: wake at shared instants, F_SETLK own byte, unlock, sleep")
	fs.IntVar(&c.instants, "instants", 50, "with -spread: number of shared instants")
	fs.DurationVar(&c.every, "every", 100*time.Millisecond, "with -spread: time between the instants")
	fs.IntVar(&c.child, "child", -1, "internal: run as locker K")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.file == "" || c.procs < 1 || c.cycles < 1 || c.instants < 1 || c.every <= 0 {
		return errors.New("need -file, -procs >= 1, -cycles >= 1, -instants >= 1, -every > 0")
	}
	if c.start == 0 {
		lead := 100 * time.Millisecond
		if c.spread {
			lead += time.Duration(c.procs) * time.Millisecond // as lockprobe's controller leads its scenario
		}
		c.start = time.Now().Add(lead).UnixNano()
	}
	if c.child >= 0 {
		if c.spread {
			return spreader(c.child, c)
		}
		return locker(c.child, c, stdout)
	}
	c.childArguments = []string{"-file", c.file, "-cycles", strconv.Itoa(c.cycles), "-hold", c.hold.String(),
		"-pause", c.pause.String(), "-start", strconv.FormatInt(c.start, 10),
		"-instants", strconv.Itoa(c.instants), "-every", c.every.String()}
	if c.spread {
		c.childArguments = append(c.childArguments, "-spread")
	}
	if c.own {
		c.childArguments = append(c.childArguments, "-own")
	}
	return parent(c, stdout)
}

// parent starts the processes and copies their lines to stdout after they end, so that
// printing never overlaps a measured instant.
func parent(c config, stdout io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	cmds := make([]*exec.Cmd, c.procs)
	outs := make([]*os.File, c.procs)
	for k := range cmds {
		f, err := os.CreateTemp("", "baseline-*.txt")
		if err != nil {
			return fmt.Errorf("temp file: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		outs[k] = f
		cmds[k] = exec.Command(exe, append(c.childArguments, "-child", strconv.Itoa(k))...)
		cmds[k].Stdout, cmds[k].Stderr = f, os.Stderr
		if err := cmds[k].Start(); err != nil {
			return fmt.Errorf("start locker %d: %w", k, err)
		}
	}
	for k, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
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

// locker is one process of the cycles program: wait for the start instant, then lock, hold,
// unlock, pause, C times. The instants go into a preallocated slice and are printed at the end.
func locker(k int, c config, stdout io.Writer) error {
	fd, err := unix.Open(c.file, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", c.file, err)
	}
	defer unix.Close(fd)
	rec := make([]cycle, c.cycles)
	if d := time.Until(time.Unix(0, c.start)); d > 0 {
		time.Sleep(d)
	}
	wr := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	un := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0}
	if c.own {
		wr.Start, wr.Len, un.Start, un.Len = int64(k), 1, int64(k), 1
	}
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
		if c.hold > 0 {
			time.Sleep(c.hold)
		}
		rec[i].release = time.Now().UnixNano()
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &un); err != nil {
			return fmt.Errorf("F_UNLCK: %w", err)
		}
		if c.pause > 0 {
			time.Sleep(c.pause)
		}
	}
	w := bufio.NewWriter(stdout)
	for _, r := range rec {
		fmt.Fprintf(w, "%d %d %d %d\n", k, r.attempt, r.grant, r.release)
	}
	return w.Flush()
}

// spreader is one process of the fire-spread floor. Between waking and sleeping again it does
// nothing but stamp and the two lock calls: no allocation, no output (printing and exiting after
// the stamp is what made an earlier floor look ten times worse), so that its spread is what two
// cores allow N processes woken at one instant.
func spreader(k int, c config) error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	fd, err := unix.Open(c.file, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", c.file, err)
	}
	defer unix.Close(fd)
	stamps := make([]int64, c.instants)
	wr := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(k), Len: 1}
	un := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: int64(k), Len: 1}
	for i := range stamps {
		ts := unix.NsecToTimespec(c.start + int64(i)*int64(c.every))
		for unix.ClockNanosleep(unix.CLOCK_REALTIME, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
		}
		stamps[i] = time.Now().UnixNano()
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &wr); err != nil {
			return fmt.Errorf("F_SETLK: %w", err)
		}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &un); err != nil {
			return fmt.Errorf("F_UNLCK: %w", err)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	for i, s := range stamps {
		fmt.Fprintf(w, "%d %d %d\n", k, c.start+int64(i)*int64(c.every), s)
	}
	return w.Flush()
}
