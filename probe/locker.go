// Package probe is the locker side of lockprobe: one OS process that takes real locks on real
// files as a controller's queue says, at instants on the controller's clock, and reports every
// attempt and hold as OpenTelemetry spans over the wire. The same process in observer role never
// locks: it watches who holds the file with F_GETLK and reports each change.
package probe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/wire"
)

// Options configure a locker. Zero values get defaults.
type Options struct {
	Endpoint string // controller ROUTER, e.g. tcp://127.0.0.1:5555. Required.
	ID       int    // run-unique locker id (observers: any id; role decides)
	Role     string // "locker" (default) or "observer"
	Node     string // the node this locker stands for. Optional: host name.
	Token    string // shared secret the controller checks
	// Allow lists the files this locker may open. Required: a locker only touches the files its
	// own command line allows.
	Allow []string
	// StartupTimeout bounds connecting, hello and clock sync. Optional: DefaultStartupTimeout.
	StartupTimeout time.Duration
	Version        string
	Log            *slog.Logger
	// DefaultGOMAXPROCS says the locker was started with one P for start-up only (control's
	// Spec.Env): it takes the runtime's default once its queue has come. Optional: false keeps
	// the GOMAXPROCS it was started with.
	DefaultGOMAXPROCS bool
}

// DefaultStartupTimeout is Options.StartupTimeout when zero.
const DefaultStartupTimeout = 15 * time.Second

// Locker is one locker or observer process's state.
type Locker struct {
	opts     Options
	conn     *wire.Conn
	out      *outbox
	rec      *recorder    // makes the spans; nil until setupTracing
	clock    clock        // what stamps use
	measured clock        // what the round trips said
	endAt    atomic.Int64 // the run's end instant (unix ns, controller clock), once the controller said it
	runEnd   time.Time    // the latest end the controller promised with the queue (controller clock)
	// localLocks says this kernel arbitrates the file's locks, so /proc/locks shows them all;
	// on FUSE, NFS, Lustre and other remote file systems it shows nothing of other nodes.
	localLocks bool
	thread     *lockThread
	welcome    *proto.Welcome
	self       *span // the lockprobe.locker (or observer) span, the parent of the others
	pid        int
	node       string
	log        *slog.Logger
	exec       *executor
}

// New validates opts and returns a Locker that has not connected yet.
func New(opts Options) (*Locker, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("locker: no controller endpoint")
	}
	if opts.Role == "" {
		opts.Role = "locker"
	}
	if opts.Role != "locker" && opts.Role != "observer" {
		return nil, fmt.Errorf("locker: role %q is not locker or observer", opts.Role)
	}
	if len(opts.Allow) == 0 {
		return nil, errors.New("locker: no allowed file")
	}
	for i, p := range opts.Allow {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("locker: allowed file %s: %w", p, err)
		}
		opts.Allow[i] = abs
	}
	if opts.StartupTimeout == 0 {
		opts.StartupTimeout = DefaultStartupTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	host, _ := os.Hostname()
	node := opts.Node
	if node == "" {
		node = host
	}
	return &Locker{opts: opts, pid: os.Getpid(), node: node, log: opts.Log.With("locker", opts.ID, "role", opts.Role)}, nil
}

// identity is the DEALER identity: explicit, so the controller's ROUTER can address it.
func (l *Locker) identity() string {
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	return fmt.Sprintf("%s-%d-%d-%x", l.opts.Role, l.opts.ID, l.pid, nonce)
}

// Run connects, runs the queue (or observes) and returns when the controller says stop, the
// queue ends with stop, the controller disappears, or ctx ends. Holds still held are released
// by the process's exit; Run ends their spans first.
func (l *Locker) Run(ctx context.Context) error {
	conn, err := wire.Dial(ctx, l.opts.Endpoint, l.identity())
	if err != nil {
		return err
	}
	l.conn = conn
	defer conn.Close()
	l.out = newOutbox(conn, l.log)

	startCtx, cancel := context.WithTimeout(ctx, l.opts.StartupTimeout)
	defer cancel()
	if err := l.hello(startCtx); err != nil {
		return err
	}
	if err := l.syncClock(startCtx); err != nil {
		return err
	}
	l.thread = startLockThread(!l.welcome.KeepPriority)
	l.setupTracing()
	if err := l.out.put(startCtx, &proto.Message{Kind: proto.KindReady, Ready: &proto.Ready{Offset: int64(l.clock.offset), Uncertainty: int64(l.clock.uncertainty), TID: l.thread.tid}}); err != nil {
		return err
	}
	reason, err := l.serve(ctx)
	l.finish(reason)
	return err
}

// hello introduces this locker until the controller answers (the ROUTER drops messages it
// cannot route, and a DEALER's first message can race its connection).
func (l *Locker) hello(ctx context.Context) error {
	h := &proto.Hello{Version: proto.Version, LockerID: l.opts.ID, Role: l.opts.Role, PID: l.pid, Host: hostName(), Node: l.node, Token: l.opts.Token, Files: l.opts.Allow}
	// The DEALER queues the hello until it is connected, so one is normally enough; resends back
	// off so that a thousand lockers starting at once do not flood the controller.
	backoff := 200 * time.Millisecond
	tick := time.NewTicker(backoff)
	defer tick.Stop()
	for {
		if err := l.out.put(ctx, &proto.Message{Kind: proto.KindHello, Hello: h}); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return fmt.Errorf("hello: no answer from controller at %s: %w", l.opts.Endpoint, ctx.Err())
			case in, ok := <-l.conn.In():
				if !ok {
					return errors.New("hello: connection closed")
				}
				if in.Err != nil {
					l.log.Warn("bad message from controller", "err", in.Err)
					continue
				}
				switch in.Msg.Kind {
				case proto.KindWelcome:
					l.welcome = in.Msg.Welcome
					return nil
				case proto.KindRefuse:
					return fmt.Errorf("hello: refused by controller: %s", in.Msg.Refuse.Reason)
				}
			case <-tick.C:
				waiting = false
				if backoff < 2*time.Second {
					backoff *= 2
					tick.Reset(backoff)
				}
			}
		}
	}
}

// executable is this process's binary, "" when the kernel does not say.
func executable() string {
	exe, _ := os.Executable()
	return exe
}

func hostName() string {
	h, _ := os.Hostname()
	return h
}

// setupTracing makes the locker's resource and its span, the parent of every other: spans are
// recorded by l.rec and rendered by the outbox's sender (record.go).
func (l *Locker) setupTracing() {
	facts := host.ReadFacts(l.opts.Allow[0])
	l.localLocks = lockmodel.KernelArbitrated(facts.FS.MagicName)
	attrs := []attribute.KeyValue{
		attribute.String(semconv.ServiceName, "lockprobe"),
		attribute.String(semconv.HostName, hostName()),
		attribute.Int(semconv.ProcessPID, l.pid),
		attribute.String(semconv.ProcessExec, executable()),
		attribute.Int(semconv.ProcTID, l.thread.tid),
		attribute.Int(semconv.LockerID, l.opts.ID),
		attribute.String(semconv.LockerRole, l.opts.Role),
		attribute.String(semconv.Node, l.node),
		attribute.String(semconv.FSType, facts.FS.MagicName),
		attribute.Int64(semconv.FSMagic, facts.FS.Magic),
		attribute.String(semconv.FSMountType, facts.FS.FSType),
		attribute.String(semconv.FSMountPoint, facts.FS.Mount.MountPoint),
		attribute.String(semconv.FSMountSource, facts.FS.Mount.Source),
		attribute.StringSlice(semconv.FSMountOpts, facts.FS.Options),
		attribute.StringSlice(semconv.FSLockOpts, facts.FS.LockOptions),
		attribute.String(semconv.OSKernel, facts.KernelRelease),
		attribute.String(semconv.LustreVersion, facts.LustreVersion),
		attribute.String(semconv.ToolVersion, l.opts.Version),
	}
	w := l.welcome
	l.out.enc = newEncoder(w.TraceID, attrs, "github.com/lockprobe/lockprobe/probe")
	l.rec = newRecorder(l.out.putOp)
	name := semconv.SpanLocker
	if l.opts.Role == "observer" {
		name = semconv.SpanObserver
	}
	l.self = l.rec.startUnder(w.ParentSpanID, name, l.clock.now(), []attribute.KeyValue{
		attribute.Int(semconv.LockerID, l.opts.ID),
		attribute.Int64(semconv.ClockOffset, int64(l.clock.offset)),
		attribute.Int64(semconv.ClockUncertainty, int64(l.clock.uncertainty)),
		attribute.Int(semconv.LockThreadNice, l.thread.nice),
	})
	l.rec.parent = l.self.id
	clockAttrs := []attribute.KeyValue{
		attribute.Int64(semconv.ClockOffset, int64(l.clock.offset)),
		attribute.Int64(semconv.ClockUncertainty, int64(l.clock.uncertainty)),
		attribute.Bool("clock.same_host", l.welcome.SameClock)}
	if !l.welcome.SameClock {
		clockAttrs = append(clockAttrs,
			attribute.Int64("clock.measured_offset_ns", int64(l.measured.offset)),
			attribute.Int64("clock.measured_uncertainty_ns", int64(l.measured.uncertainty)))
	}
	l.self.addEvent(l.rec, semconv.EventClock, l.clock.now(), clockAttrs, true)
}

// endClamp is the end of something that began at begin and would end at t: no later than the
// run's end once the controller has said it (the same instant for every locker), and never
// before it began.
func (l *Locker) endClamp(t, begin time.Time) time.Time {
	if at := l.endAt.Load(); at != 0 && at < t.UnixNano() {
		t = time.Unix(0, at)
	}
	if t.Before(begin) {
		t = begin
	}
	return t
}

// finish ends the spans still open, flushes them and says goodbye.
func (l *Locker) finish(reason end) {
	if l.rec == nil {
		return
	}
	if l.exec != nil {
		l.exec.abandon(reason)
	}
	l.self.endAt(l.rec, l.endClamp(l.clock.now(), l.self.startTime()))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = l.out.put(ctx, &proto.Message{Kind: proto.KindBye, Bye: &proto.Bye{Dropped: l.out.failed.Load()}})
	l.out.drain(ctx)
	l.awaitByeAck(ctx)
}

// awaitByeAck waits (bounded) until the controller has read the bye, the last message. Closing
// the socket earlier can reset the connection while the controller still has unread data from
// us — the kernel then throws that data away, and with it the final spans.
func (l *Locker) awaitByeAck(ctx context.Context) {
	wait, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		select {
		case <-wait.Done():
			return
		case in, ok := <-l.conn.In():
			if !ok {
				return
			}
			if in.Err == nil && in.Msg.Kind == proto.KindAck && in.Msg.Ack.Kind == proto.KindBye {
				return
			}
		}
	}
}
