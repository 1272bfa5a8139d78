package bench

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkGetlk measures the watcher's own syscall: F_GETLK for a write lock on a file whose
// lock is held by another owner (an OFD lock on a second open file description of the same
// file, which conflicts with this process's POSIX query as another process's lock would), in
// process. With the watcher's schedule (first look at min(poll/10, 5ms), then one per poll) it
// gives the calls per second per waiter and the share of a core one waiter's watcher costs.
func BenchmarkGetlk(b *testing.B) {
	path := filepath.Join(b.TempDir(), "lock-file")
	holder, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(holder)
	waiter, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(waiter)
	wr := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(holder), unix.F_OFD_SETLK, &wr); err != nil {
		b.Fatalf("hold: %v", err)
	}
	const calls = 200_000
	for i := 0; i < b.N; i++ {
		c0, t0 := cpuTime(), time.Now()
		for k := 0; k < calls; k++ {
			q := unix.Flock_t{Type: unix.F_WRLCK}
			if err := unix.FcntlFlock(uintptr(waiter), unix.F_GETLK, &q); err != nil {
				b.Fatal(err)
			}
			if q.Type != unix.F_WRLCK {
				b.Fatalf("F_GETLK found no conflict (type %d)", q.Type)
			}
		}
		wall, cpu := time.Since(t0), cpuTime()-c0
		perCall := float64(cpu.Nanoseconds()) / calls
		b.ReportMetric(float64(wall.Nanoseconds())/calls, "ns/call-wall")
		b.ReportMetric(perCall, "ns/call-cpu")
		for _, p := range []struct {
			unit string
			poll time.Duration
		}{{"100ms", 100 * time.Millisecond}, {"1ms", time.Millisecond}} {
			rate := float64(time.Second / p.poll)
			b.ReportMetric(rate, "calls/s/waiter@"+p.unit)
			b.ReportMetric(rate*perCall/1e9*100, "core-%/waiter@"+p.unit)
		}
	}
}
