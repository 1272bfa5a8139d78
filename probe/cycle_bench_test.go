package probe

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/scenario"
	"github.com/lockprobe/lockprobe/semconv"
)

// stormQueue is the storm built-in's queue for one locker on a fresh file, with cycles
// write/release pairs.
func stormQueue(b *testing.B, cycles int) ([]proto.Command, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "lock-file")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := scenario.Builtin("storm")
	if err != nil {
		b.Fatal(err)
	}
	qs, err := s.Queues(1, []string{path})
	if err != nil {
		b.Fatal(err)
	}
	var loop []proto.Command
	for _, c := range qs[0] {
		if c.Op == proto.OpLock || c.Op == proto.OpRelease {
			loop = append(loop, c)
		}
		if len(loop) == 2 {
			break
		}
	}
	q := []proto.Command{qs[0][0]} // file@
	for range cycles {
		q = append(q, loop...)
	}
	return q, path
}

// BenchmarkLockCycle is the lock thread's work per storm cycle (write style=wait, release) in
// process, uncontended, with the spans queued to a list the way the outbox's queue takes them:
// "traced" is the executor, "bare" the two lock calls and three clock reads of bench/baseline.
// Between chunks the rendered spans' values are handed back as the sender does.
// The sender's rendering of those items is BenchmarkEncodeBatch.
func BenchmarkLockCycle(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		_, path := stormQueue(b, 0)
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		var t int64
		for b.Loop() {
			t += time.Now().UnixNano()
			if err := setLock(fd, lockReq{kind: semconv.KindPOSIX, mode: semconv.ModeWrite, wait: true}); err != nil {
				b.Fatal(err)
			}
			t += time.Now().UnixNano()
			t += time.Now().UnixNano()
			if err := setLock(fd, lockReq{kind: semconv.KindPOSIX}); err != nil {
				b.Fatal(err)
			}
		}
		_ = t
	})
	b.Run("traced", func(b *testing.B) {
		const chunk = 1000
		q, path := stormQueue(b, chunk)
		items := make([]item, 0, 8*chunk)
		l := &Locker{opts: Options{ID: 0, Role: "locker", Allow: []string{path}}, welcome: &proto.Welcome{}, thread: &lockThread{}}
		l.rec = newRecorder(func(it item) { items = append(items, it) })
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; done += chunk {
			// The sender hands back the values of the spans it has rendered (reuse.go); it
			// runs on its own goroutine, not in the lock thread's time.
			b.StopTimer()
			recycleEnded(items)
			clear(items)
			b.StartTimer()
			items = items[:0]
			e := &executor{l: l, queue: q, peers: l.peerTable(nil), stop: make(chan struct{})}
			if end := e.run(); end != endQueueEmpty {
				b.Fatalf("queue ended %v", end)
			}
			e.mu.Lock()
			e.endAll(l.clock.now().UnixNano(), semconv.HoldExit)
			e.mu.Unlock()
			for _, s := range e.slots {
				if s != nil {
					unix.Close(s.fd)
				}
			}
		}
		b.ReportMetric(float64(len(items))/chunk, "items/cycle")
	})
}

// BenchmarkEncodeBatch is the sender's work per storm cycle: the items of 1000 cycles rendered as
// the batches it sends (one OTLP request per batch), in the buffer it keeps.
func BenchmarkEncodeBatch(b *testing.B) {
	const chunk = 1000
	q, path := stormQueue(b, chunk)
	var items []item
	l := &Locker{opts: Options{ID: 0, Role: "locker", Allow: []string{path}}, welcome: &proto.Welcome{}, thread: &lockThread{}}
	l.rec = newRecorder(func(it item) { items = append(items, it) })
	e := &executor{l: l, queue: q, peers: l.peerTable(nil), stop: make(chan struct{})}
	e.run()
	enc := newEncoder([16]byte{1}, []attribute.KeyValue{attribute.String(semconv.ServiceName, "lockprobe")}, "scope")
	b.ReportAllocs()
	bytes, records := 0, 0
	var buf []byte // the sender's, kept from batch to batch (outbox.buf)
	for b.Loop() {
		var raw []byte
		var n int
		raw, buf, n = enc.requestIn(buf, items)
		bytes, records = len(raw), n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/chunk, "ns/cycle")
	b.ReportMetric(float64(bytes)/float64(records), "bytes/record")
}
