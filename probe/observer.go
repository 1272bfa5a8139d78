package probe

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// observer is the independent witness of a node: a process that never takes a lock and asks
// F_GETLK over the whole file, for a write request (any holder) and a read request (writers),
// recording each change of answer. When it names the waiter itself as holder, the file system
// granted a lock that was never delivered.
type observer struct {
	l    *Locker
	quit chan struct{}
	done chan struct{}
}

func (l *Locker) startObserver(peers *lockmodel.Processes) *observer {
	o := &observer{l: l, quit: make(chan struct{}), done: make(chan struct{})}
	go o.run(peers)
	return o
}

func (o *observer) stop() {
	close(o.quit)
	select {
	case <-o.done:
	case <-time.After(time.Second): // an F_GETLK stuck in a dead client must not hold up the exit
	}
}

func (o *observer) run(peers *lockmodel.Processes) {
	defer close(o.done)
	l := o.l
	path := l.opts.Allow[0]
	// Opened read-write because F_GETLK of a write request wants a descriptor that could take
	// one; the observer never locks, and being its own process its close drops nobody's locks.
	fd, id, err := openLockFile(path, false, false)
	if err != nil {
		l.self.setAttributes(attribute.String("observer.error", err.Error()))
		return
	}
	defer unix.Close(fd)
	e := &executor{l: l, peers: peers}
	s := &slot{fd: fd, path: path, logical: "{file}", file: id}
	poll := l.welcome.Poll
	if poll <= 0 {
		poll = lockmodel.DefaultPoll
	}
	last := map[string]owner{}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		// Its questions wait out the window around an instant of the run: the observer shares
		// the cores with the lockers that fire then.
		l.out.sleepQuiet()
		for _, q := range observerQueries {
			var ow owner
			// The answer is stamped when the question was put: it describes some instant of
			// the call, no earlier than this. On two cores shared with a thousand lockers the
			// process could wait seconds for a core between the call and a stamp taken after
			// it, and an answer given while the holder lived was dated after its death — a
			// stale holder that never was.
			asked := l.clock.now()
			if q.kind == semconv.KindFlock {
				// flock has no query call: /proc/locks names its holders where the kernel
				// arbitrates (local file systems).
				ow = o.flockHolder(e, s)
			} else {
				ow = e.query(s, lockReq{kind: q.kind, mode: q.mode})
			}
			if prev, ok := last[q.name]; ok && prev.same(ow) {
				continue
			}
			last[q.name] = ow
			attrs := append(ownerAttrs(ow), attribute.String(semconv.QueryMode, q.name), attribute.String(semconv.FileLogical, "{file}"), attribute.String(semconv.FilePath, path))
			l.self.addEvent(l.rec, semconv.EventObserved, asked, attrs, true)
		}
		select {
		case <-o.quit:
			return
		case <-tick.C:
		}
	}
}

// observerQueries are the questions an observer asks over the whole file, each recorded under
// its name (lock.query.mode): a write request (any holder), a read request (writers), and the
// flock holders.
var observerQueries = []struct {
	name string
	kind semconv.Kind
	mode semconv.Mode
}{
	{"write", semconv.KindPOSIX, semconv.ModeWrite},
	{"read", semconv.KindPOSIX, semconv.ModeRead},
	{"flock", semconv.KindFlock, semconv.ModeNone},
}

// flockHolder returns the first FLOCK holder of the file in /proc/locks, or no owner.
func (o *observer) flockHolder(e *executor, s *slot) owner {
	entries, err := host.ReadLocks()
	if err != nil {
		return noOwner
	}
	for _, en := range host.FilterFile(entries, s.file) {
		if en.Class != "FLOCK" || en.Waiter {
			continue
		}
		ow := owner{pid: en.PID, mode: procMode(en.Mode), lockerID: -1, source: semconv.OwnerFromProcLocks}
		e.classify(&ow, s)
		return ow
	}
	return noOwner
}
