package probe

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/proto"
)

// clock converts the locker's instants to the controller's clock.
type clock struct {
	offset      time.Duration // controller − locker
	uncertainty time.Duration // half the best round trip
}

// now is the current instant on the controller's clock.
func (c clock) now() time.Time { return time.Now().Add(c.offset) }

// local converts an instant on the controller's clock to the local clock.
func (c clock) local(t time.Time) time.Time { return t.Add(-c.offset) }

// syncRounds is how many ping/pong round trips the offset is measured over; the round trip with
// the smallest delay bounds the offset best (Cristian's method).
const syncRounds = 16

// syncClock measures the offset to the controller. Messages other than pongs that arrive in the
// meantime are not expected before Ready and are dropped with a warning. A member on the
// controller's host shares its clock and measures nothing: offset 0, uncertainty 0. (It used to
// measure two round trips for information only; with a thousand lockers starting on two cores
// those waited behind every other locker's messages in the controller's queue, half of a
// locker's time from welcome to ready, and a pong later than 2 s was asked for again.)
func (l *Locker) syncClock(ctx context.Context) error {
	if l.welcome.SameClock {
		l.clock = clock{}
		return nil
	}
	best, err := l.measure(ctx, syncRounds)
	if err != nil {
		return err
	}
	l.measured = best
	l.clock = best
	return nil
}

func (l *Locker) measure(ctx context.Context, rounds int) (clock, error) {
	var best clock
	bestRTT := time.Duration(-1)
	for i := 0; i < rounds; i++ {
		t1 := time.Now()
		if err := l.out.put(ctx, &proto.Message{Kind: proto.KindPing, Ping: &proto.Ping{T1: t1.UnixNano()}}); err != nil {
			return best, fmt.Errorf("clock sync: %w", err)
		}
		pong, err := l.awaitPong(ctx, t1.UnixNano())
		if errors.Is(err, errNoPong) {
			// A late pong is a busy controller (a thousand lockers starting at once leave it a
			// thousandth of the cores), not a lost one: ask again, within the start-up deadline.
			i--
			continue
		}
		if err != nil {
			return best, err
		}
		t4 := time.Now()
		rtt := t4.Sub(t1)
		if bestRTT < 0 || rtt < bestRTT {
			bestRTT = rtt
			mid := t1.Add(rtt / 2)
			best = clock{offset: time.Unix(0, pong.TC).Sub(mid), uncertainty: rtt / 2}
		}
	}
	return best, nil
}

// errNoPong: no pong within pongWait. A round trip that slow says nothing about the offset.
var errNoPong = errors.New("clock sync: no pong within 2s")

const pongWait = 2 * time.Second

func (l *Locker) awaitPong(ctx context.Context, t1 int64) (*proto.Pong, error) {
	timeout := time.NewTimer(pongWait)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("clock sync: %w", ctx.Err())
		case <-timeout.C:
			return nil, errNoPong
		case in, ok := <-l.conn.In():
			if !ok {
				return nil, errors.New("clock sync: connection closed")
			}
			if in.Err == nil && in.Msg.Kind == proto.KindPong && in.Msg.Pong.T1 == t1 {
				return in.Msg.Pong, nil
			}
		}
	}
}

// sleepUntil waits until the local instant t: an absolute clock_nanosleep (no drift from
// computing a relative duration), then a spin over the last stretch (spin; the controller's
// choice). The caller runs on a locked OS thread with 1 ns timer slack.
func sleepUntil(t time.Time, spin time.Duration) {
	wake := t.Add(-spin)
	if time.Until(wake) > 0 {
		ts := unix.NsecToTimespec(wake.UnixNano())
		for {
			err := unix.ClockNanosleep(unix.CLOCK_REALTIME, unix.TIMER_ABSTIME, &ts, nil)
			if err != unix.EINTR {
				break
			}
		}
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
}

// lockThread is the one OS thread that makes every lock call of a locker: locked, with 1 ns
// timer slack for firing at instants, and started before the locker says it is ready so that its
// thread id can be shared with the peers (FUSE passes the caller's thread id as the owner's pid).
type lockThread struct {
	tid  int
	nice int // the thread's nice value once started (lockThreadNice when the host allowed it)
	work chan func()
}

// lockThreadNice is the nice value the lock thread asks for. In a storm the lock holder's cycle
// is the run's critical path, and on a host with fewer cores than busy threads it waited for the
// instrument's own threads (its sender's rendering, the controller's ingest, other lockers'
// senders): at nice 0, of a 10-locker storm's window on two cores, the lock threads ran a
// fifth and the senders and the controller half (perf record -a over the window). The lock
// thread works only between its waits, in short stretches, so ranking it above the rest of the
// instrument takes nothing from them but the moments it needs. Raising a priority needs
// CAP_SYS_NICE (or RLIMIT_NICE); without it the thread keeps its nice value, and the locker
// span says which it ran with (semconv.LockThreadNice). A run told to keep the lockers'
// priority (Welcome.KeepPriority: other work on the node must not rank below ours) asks nothing.
const lockThreadNice = -10

// startLockThread starts the lock thread; raise asks for lockThreadNice.
func startLockThread(raise bool) *lockThread {
	t := &lockThread{work: make(chan func())}
	ready := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the process
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		tid := unix.Gettid()
		if raise {
			_ = unix.Setpriority(unix.PRIO_PROCESS, tid, lockThreadNice)
		}
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil {
			t.nice = 20 - p // the system call's value: 20 - nice
		}
		ready <- tid
		for f := range t.work {
			f()
		}
	}()
	t.tid = <-ready
	return t
}
