package probe

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// resyncEvery is how often the clock offset is measured again during the run.
const resyncEvery = 2 * time.Second

// serve handles the controller's messages until the run ends for this locker, and says why.
func (l *Locker) serve(ctx context.Context) (end, error) {
	beat := l.welcome.Heartbeat
	if beat <= 0 {
		beat = time.Second
	}
	lastHeard := time.Now()
	tick := time.NewTicker(beat)
	defer tick.Stop()
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	execDone := make(chan end, 1)
	var obs *observer
	defer func() {
		if obs != nil {
			obs.stop()
		}
	}()
	var burst resyncBurst
	for {
		select {
		case <-ctx.Done():
			return endInterrupted, ctx.Err()
		case in, ok := <-l.conn.In():
			if !ok {
				return endControllerGone, nil
			}
			lastHeard = time.Now()
			if in.Err != nil {
				l.log.Warn("bad message from controller", "err", in.Err)
				continue
			}
			m := in.Msg
			switch m.Kind {
			case proto.KindCommands:
				_ = l.out.put(ctx, &proto.Message{Kind: proto.KindAck, Ack: &proto.Ack{Kind: m.Kind, Seq: m.Seq}})
				if l.exec != nil || obs != nil {
					continue // a resend after a lost ack
				}
				// Started with one P (control's Spec.Env: a thousand runtimes starting on two
				// cores spun their idle threads), the member runs its queue with the runtime's
				// default: the lock thread must not wait for a P another goroutine holds. A
				// GOMAXPROCS the user chose stays.
				if l.opts.DefaultGOMAXPROCS {
					runtime.SetDefaultGOMAXPROCS()
				}
				l.self.setAttributes(attribute.Int(semconv.GOMAXPROCS, runtime.GOMAXPROCS(0)))
				peers := l.peerTable(m.Commands.Peers)
				local := 0
				for _, p := range m.Commands.Peers {
					if p.Node == l.node {
						local++
					}
				}
				l.out.setTrail(local, runtime.NumCPU())
				shared := make([]time.Time, len(m.Commands.Instants))
				for i, t := range m.Commands.Instants {
					shared[i] = l.clock.local(t)
				}
				l.out.setInstants(shared)
				if l.opts.Role == "observer" {
					l.runEnd = m.Commands.End
					obs = l.startObserver(peers)
					continue
				}
				l.runEnd = m.Commands.End
				l.exec = &executor{l: l, queue: m.Commands.Queue, start: m.Commands.Start, peers: peers, stop: make(chan struct{})}
				exec := l.exec
				l.thread.work <- func() { execDone <- exec.run() }
			case proto.KindStop:
				if m.Stop.At != 0 {
					l.endAt.Store(m.Stop.At)
				}
				if l.exec != nil {
					l.exec.halt()
				}
				return endRunEnd, nil
			case proto.KindSnapReq:
				// The run is over: start nothing more, so that the snapshot shows how it ended
				// and no lock is taken after the end instant.
				if m.SnapReq.At != 0 {
					l.endAt.Store(m.SnapReq.At)
				}
				if l.exec != nil {
					l.exec.halt()
				}
				snap := l.threadsSnapshot()
				if l.exec != nil {
					snap = l.exec.snapshot()
				}
				_ = l.out.put(ctx, &proto.Message{Kind: proto.KindSnapshot, Snapshot: snap})
			case proto.KindPong:
				if best, done := burst.pong(m.Pong, in.At); done {
					l.recordResync(best)
				}
			}
		case why := <-execDone:
			if why == endStopCmd {
				return endStopCmd, nil
			}
			if why == endQueueEmpty {
				_ = l.out.put(ctx, &proto.Message{Kind: proto.KindIdle, Idle: &proto.Idle{Executed: len(l.exec.queue)}})
			}
		case <-resync.C:
			if best, ok := burst.start(); ok {
				l.recordResync(best) // the last burst's best, some pongs of which never came
			}
			pings := resyncPings
			if l.welcome.SameClock {
				pings = 1 // one clock: nothing to measure; the ping only says the locker is there
			}
			for range pings {
				t1 := time.Now().UnixNano()
				burst.sent(t1)
				_ = l.out.put(ctx, &proto.Message{Kind: proto.KindPing, Ping: &proto.Ping{T1: t1}})
			}
		case <-tick.C:
			if silent(lastHeard, time.Now(), beat, l.conn.Backlog()) && l.controllerGone() {
				l.log.Warn("controller silent: releasing and exiting", "silent", time.Since(lastHeard).Round(time.Millisecond))
				if l.exec != nil {
					l.exec.halt()
				}
				return endControllerGone, nil
			}
		}
	}
}

// silent says whether the controller has said nothing for five beats. Messages already taken
// off the socket and waiting for this loop were heard: select picks a ready tick as readily as a
// ready message, and on a host busy with a thousand lockers the loop found the tick first with
// the controller's messages queued behind it, and left a controller that was talking.
func silent(lastHeard, now time.Time, beat time.Duration, waiting int) bool {
	return waiting == 0 && now.Sub(lastHeard) > 5*beat
}

// leaveAfterEnd is how long past the run's end a locker that hears nothing from its controller
// keeps going before it releases and leaves: the controller's stop may be on its way over a
// link that is just coming back.
const leaveAfterEnd = 5 * time.Second

// controllerGone decides, once the controller has fallen silent, whether it is gone. On the
// controller's own host it is (no partition lies between them: it was stopped or died), and so
// it is before the queue came (nothing was promised). A locker on another node may instead be
// cut off by a partition, which heals: it keeps running its queue, and what it records waits in
// the outbox, until the run's end has passed.
func (l *Locker) controllerGone() bool {
	return l.welcome.SameClock || l.runEnd.IsZero() || l.clock.now().After(l.runEnd.Add(leaveAfterEnd))
}

// resyncPings is how many round trips each re-measurement takes; the shortest one wins, as at
// start-up, so that one round trip slowed by a busy node does not widen the bound.
const resyncPings = 4

// resyncBurst is one re-measurement of the clock offset: the pings it sent and the best pong.
type resyncBurst struct {
	out  map[int64]bool // pings sent, by their T1, not answered yet
	best clock
	got  bool
}

// start begins a new burst and returns the previous one's best, if it had any pong.
func (b *resyncBurst) start() (clock, bool) {
	best, got := b.best, b.got
	*b = resyncBurst{out: map[int64]bool{}}
	return best, got
}

func (b *resyncBurst) sent(t1 int64) { b.out[t1] = true }

// pong takes an answer received at t4 and, once the burst's last answer is in, returns its
// best measurement.
func (b *resyncBurst) pong(p *proto.Pong, t4 time.Time) (clock, bool) {
	if !b.out[p.T1] {
		return clock{}, false
	}
	delete(b.out, p.T1)
	t1 := time.Unix(0, p.T1)
	rtt := t4.Sub(t1)
	if c := (clock{offset: time.Unix(0, p.TC).Sub(t1.Add(rtt / 2)), uncertainty: rtt / 2}); !b.got || c.uncertainty < b.best.uncertainty {
		b.best, b.got = c, true
	}
	if len(b.out) > 0 {
		return clock{}, false
	}
	best := b.best
	b.got = false
	return best, true
}

// recordResync records a re-measured offset as a clock.sync event. The locker keeps stamping
// with the offset measured at start-up, so that its instants never jump; the events bound the
// drift for whoever compares instants across lockers later.
//
// A burst whose best round trip is far slower than the start-up's (pings sent into a partition,
// answered after the heal) says next to nothing about the offset and would widen the bound of
// every comparison with this node by seconds: it is not recorded, and the next burst measures
// again.
func (l *Locker) recordResync(c clock) {
	if l.welcome.SameClock {
		return // one clock: a re-measurement would only record the noise of the round trip
	}
	if c.uncertainty > 4*l.clock.uncertainty+time.Millisecond {
		l.log.Debug("clock re-measurement skipped: slow round trips", "half_rtt", c.uncertainty)
		return
	}
	l.self.addEvent(l.rec, semconv.EventClock, l.clock.now(), []attribute.KeyValue{
		attribute.Int64(semconv.ClockOffset, int64(c.offset)),
		attribute.Int64(semconv.ClockUncertainty, int64(c.uncertainty)),
		attribute.Bool("clock.resync", true),
		attribute.Bool("clock.same_host", l.welcome.SameClock)}, false)
}

// threadsSnapshot reports an observer's (or an idle locker's) state: the thread waiting in the
// kernel's lock or FUSE code if there is one (an observer's F_GETLK stuck in a stopped client),
// else the main thread.
func (l *Locker) threadsSnapshot() *proto.Snapshot {
	snap := &proto.Snapshot{At: l.clock.now().UnixNano(), PID: l.pid, Stack: []string{}}
	threads, err := host.ReadThreads(l.pid)
	if err != nil || len(threads) == 0 {
		return snap
	}
	pick := host.WaitingThread(threads)
	snap.TID, snap.State, snap.Wchan = pick.TID, pick.State, pick.Wchan
	if pick.Stack != nil {
		snap.Stack = pick.Stack
	}
	return snap
}

// peerTable is the owner rule's table of the run's lockers, this one among them.
func (l *Locker) peerTable(peers []proto.Peer) *lockmodel.Processes {
	t := &lockmodel.Processes{}
	for _, p := range peers {
		t.Add(lockmodel.Process{Locker: int64(p.LockerID), Node: p.Node, PID: int64(p.PID), TIDs: []int64{int64(p.TID)}})
	}
	if l.opts.Role == "locker" {
		t.Add(lockmodel.Process{Locker: int64(l.opts.ID), Node: l.node, PID: int64(l.pid), TIDs: []int64{int64(l.thread.tid)}})
	}
	return t
}

// end says why a locker's queue, or its whole run, ended.
type end uint8

// Why a queue or a run ended.
const (
	endQueueEmpty     end = iota // the queue ran out; the locker waits for the controller's stop
	endStopCmd                   // the queue's stop command
	endStopped                   // the executor was told to stop before its queue ran out
	endRunEnd                    // the controller's Stop: the run ended
	endControllerGone            // the controller went silent or closed the connection
	endInterrupted               // the locker's own context was cancelled
)

var endNames = [...]string{
	endQueueEmpty: "queue-empty", endStopCmd: "stop", endStopped: "stopped", endRunEnd: "run-end",
	endControllerGone: "controller-gone", endInterrupted: "interrupted",
}

func (e end) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return fmt.Sprintf("end(%d)", uint8(e))
}
