package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"github.com/lockprobe/lockprobe/wire"
)

// Result is what a run leaves behind for the CLI to analyse and report.
type Result struct {
	OutDir       string
	TracePath    string
	EndReason    string // done | timeout | hang | interrupted | start-failed
	Start, End   time.Time
	Killed       []string // members that had to be killed
	Unresponsive []string // members that did not answer the snapshot request, or did not read what they were sent
	RootSpanID   string
	TraceID      string
}

// ListenError says the controller could not listen where it was told to (Options.Listen): the
// endpoint is malformed or taken. Nothing was started and nothing written.
type ListenError struct{ Err error }

func (e *ListenError) Error() string { return e.Err.Error() }
func (e *ListenError) Unwrap() error { return e.Err }

type run struct {
	opts    Options
	conn    *wire.Conn
	in      <-chan incoming // the socket's messages, span records decoded; nil once it has closed
	ingest  *ingest
	token   string
	traceID [16]byte
	rootID  [8]byte
	writer  *tracefile.Writer
	merger  *tracefile.Merger
	members []*member
	byIdent map[string]*member
	refused map[string]bool // identities refused once; their further hellos are ignored
	exits   chan exitNote
	res     *Result
	start   time.Time
	scenAt  time.Time
	snap    *snapshot
	live    live
	host    string
	endAt   time.Time // when the run was decided to be over
	// queues encodes the members' Commands: all but the queue (the peer table, fixed when the
	// queues go out) is encoded once.
	queues *proto.CommandsEncoder
	// group is what Options.Launch started; groupDone its end, nil once handled.
	group     Group
	groupDone <-chan struct{}
	silent    map[string]*silence // nodes silent now, by name
	runEnd    time.Time           // the timeout's instant, told to the members with their queues
	reachable time.Time           // when every healed node hears the controller again, at the latest
	// files holds each file's identity and file-system facts, taken once at the start: at the
	// end a client may be stopped or dead, and a stat(2) through it would never return.
	files []fileFacts
	// quiet holds the run's scheduled instants once the queues go out (sendCommands), and how
	// long after each the controller's periodic work waits; the beat goroutine reads it too.
	quiet atomic.Pointer[quietWindows]
	// lockerLog takes the standard output and error of the members started here.
	lockerLog *os.File
	// settling holds the exits that wait for their member's last messages (exited).
	settling []settling
}

type fileFacts struct {
	path  string
	id    host.FileID
	idErr error
	fs    host.FSInfo
	fsErr error
}

type exitNote struct {
	m    *member
	exit Exit
}

// Run performs one run. It returns an error only when the run could not take place (a
// *ListenError, or the lockers could not be started); a run that hangs, times out or is
// interrupted is a Result. Output files are readable by this user only: they hold host names,
// mount sources, kernel stacks and command lines.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	r := &run{opts: opts, byIdent: map[string]*member{}, refused: map[string]bool{}, merger: tracefile.NewMerger(), start: time.Now(),
		silent: map[string]*silence{}}
	r.token = opts.Token
	if r.token == "" {
		r.token = randomHex(16)
	}
	r.host, _ = os.Hostname()
	_, _ = rand.Read(r.traceID[:])
	_, _ = rand.Read(r.rootID[:])
	// Listen before anything is written: a run that cannot listen leaves the output folder, and a
	// previous run's trace in it, as they were. The sockets live on their own context: an
	// interrupted run still stops its lockers over them.
	conn, err := opts.Listener(context.Background(), wire.ListenOptions{TCP: opts.Listen})
	if err != nil {
		return nil, &ListenError{err}
	}
	r.conn, r.ingest = conn, startIngest(conn.In())
	r.in = r.ingest.out
	defer conn.Close()
	defer r.ingest.close()
	if err := os.MkdirAll(opts.OutDir, 0o700); err != nil {
		return nil, fmt.Errorf("create output folder: %w", err)
	}
	r.res = &Result{OutDir: opts.OutDir, TracePath: filepath.Join(opts.OutDir, tracefile.FileName), Start: r.start,
		TraceID: hex.EncodeToString(r.traceID[:]), RootSpanID: hex.EncodeToString(r.rootID[:])}
	w, err := tracefile.Create(r.res.TracePath)
	if err != nil {
		return nil, err
	}
	// zstd and the write leave the loop: it only queues the requests, in its order.
	w.Background(ingestDepth)
	r.writer = w
	defer w.Close()
	r.writeRoot(false)

	logFile, err := os.OpenFile(filepath.Join(opts.OutDir, "lockers.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create locker log: %w", err)
	}
	defer logFile.Close()
	r.exits = make(chan exitNote, len(opts.Queues)+len(opts.Files))
	r.plan()
	for _, f := range opts.Files {
		ff := fileFacts{path: f}
		ff.id, ff.idErr = host.StatFile(f)
		ff.fs, ff.fsErr = host.FileSystem(f)
		r.files = append(r.files, ff)
	}
	if opts.Announce != nil && opts.Remote > 0 {
		opts.Announce(conn.RemoteEndpoint(), r.token)
	}
	startFailed := func(err error) (*Result, error) {
		r.endAt = time.Now()
		r.shutdown("start-failed")
		r.finish("start-failed")
		return nil, err
	}
	if opts.Launch != nil {
		if err := r.launch(ctx); err != nil {
			return startFailed(err)
		}
	}
	r.lockerLog = logFile
	stopBeats := r.beat()
	defer stopBeats()
	reason, loopErr := r.loop(ctx)
	var se *spawnError
	if errors.As(loopErr, &se) {
		return startFailed(se.err)
	}
	r.endAt = time.Now()
	if r.opts.Progress != nil {
		r.opts.Progress(Status{})
	}
	r.shutdown(reason)
	if err := r.finish(reason); err != nil && loopErr == nil {
		loopErr = err
	}
	return r.res, loopErr
}

// finish writes the records that close the run: silences still open, spans nobody ended, and
// the root's final one.
func (r *run) finish(reason string) error {
	r.settleExits(true)
	r.res.End = r.endAt
	r.res.EndReason = reason
	r.closeSilences()
	r.closeOpenSpans()
	r.writeRoot(true)
	for _, m := range r.members {
		if m.phase == phaseExited && !m.saidBye() && m.proc != nil {
			r.opts.Log.Warn("member exited without goodbye", "member", m.label(), "pid", m.pid, "status", m.exit.Status)
		}
		if m.undelivered > 0 {
			r.res.Unresponsive = append(r.res.Unresponsive, fmt.Sprintf("%s (pid %d on %s): not reading, %d messages to it not delivered",
				m.label(), m.pid, m.node, m.undelivered))
		}
	}
	return r.writer.Close()
}

// lost is how many of the members' messages never arrived: gaps in their sequence numbers, and
// what a member that ended without its goodbye still had queued.
func (r *run) lost() uint64 {
	var n uint64
	for _, m := range r.members {
		n += m.lost + m.unsent()
	}
	return n
}

// plan names the members: lockers round-robin over the files (each file is a node), then one
// observer per file; or, with a launcher, the members on the cluster's nodes.
func (r *run) plan() {
	if r.opts.Launch != nil {
		r.planLaunched()
		return
	}
	nodeOf := func(k int) string {
		if len(r.opts.Files) == 1 {
			return r.host
		}
		return fmt.Sprintf("%s/client%d", r.host, k)
	}
	firstRemote := len(r.opts.Queues) - r.opts.Remote
	for i := range r.opts.Queues {
		k := i % len(r.opts.Files)
		m := &member{id: i, role: roleLocker, node: nodeOf(k), file: r.opts.Files[k]}
		if i >= firstRemote {
			m.remote, m.node = true, "" // its node is what its hello says
		}
		r.members = append(r.members, m)
	}
	if !r.opts.NoObservers {
		for k, f := range r.opts.Files {
			r.members = append(r.members, &member{id: -1 - k, role: roleObserver, node: nodeOf(k), file: f})
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// spawnError is a member that Options.Start could not start: the run did not take place.
type spawnError struct{ err error }

func (e *spawnError) Error() string { return e.err.Error() }

// always is a channel that is always ready: a select case on it is taken whenever nothing else
// is, and in turn with what else is ready.
var always = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// spawn starts one member through Options.Start.
func (r *run) spawn(m *member, log *os.File) error {
	p, err := r.opts.Start(Spec{ID: m.id, Role: m.role.String(), Node: m.node, File: m.file, Endpoint: r.conn.LocalEndpoint(),
		Token: r.token, StartupTimeout: r.opts.StartupTimeout + 5*time.Second, Log: log})
	if err != nil {
		return fmt.Errorf("start %s: %w", m.label(), err)
	}
	m.proc, m.pid = p, p.PID()
	m.to(phaseStarted)
	go func() { r.exits <- exitNote{m: m, exit: p.Wait()} }()
	return nil
}

// receive takes the next message from the socket; ok is false once the socket has closed, and
// from then on r.in is nil, so that a select on it waits for its other cases instead of
// spinning on a closed channel.
func (r *run) receive(in incoming, ok bool) bool {
	if !ok {
		r.in = nil
		return false
	}
	r.ingest.taken()
	r.handle(in)
	r.settleExits(false)
	return true
}

// loop runs the protocol until the run ends and says why.
func (r *run) loop(ctx context.Context) (string, error) {
	startup := time.NewTimer(r.opts.StartupTimeout)
	defer startup.Stop()
	var timeout <-chan time.Time
	poll := time.NewTicker(r.opts.Poll)
	defer poll.Stop()
	beat := time.NewTicker(beatEvery)
	defer beat.Stop()
	progress := time.NewTicker(500 * time.Millisecond)
	defer progress.Stop()
	started := false
	// This host's members are started from the loop, one per turn, in turn with the messages
	// that have arrived: started all before the first message was read, a thousand lockers
	// waited for the last of them to be started before any was welcomed.
	var toStart []*member
	for _, m := range r.members {
		if !m.remote {
			toStart = append(toStart, m)
		}
	}
	var startC <-chan struct{}
	if len(toStart) > 0 {
		startC = always
	}
	var deferred int               // periodic work waiting for an instant's window to end
	var deferredC <-chan time.Time // that window's end
	for {
		select {
		case <-ctx.Done():
			return "interrupted", nil
		case <-startC:
			if err := r.spawn(toStart[0], r.lockerLog); err != nil {
				return "start-failed", &spawnError{err}
			}
			if toStart = toStart[1:]; len(toStart) == 0 {
				startC = nil
			}
		case in, ok := <-r.in:
			if !r.receive(in, ok) {
				return "interrupted", errors.New("controller socket closed")
			}
			if !started && r.allReady() {
				started = true
				startup.Stop()
				r.sendCommands()
				t := time.NewTimer(r.opts.Timeout)
				defer t.Stop()
				timeout = t.C
			}
			if started && r.allDone() {
				return "done", nil
			}
		case <-r.groupDone:
			err := r.groupExited()
			if !started {
				if err == nil {
					err = errors.New("they ended before they were ready")
				}
				return "start-failed", &StartError{err}
			}
			if r.allDone() {
				return "done", nil
			}
		case note := <-r.exits:
			r.exited(note)
			if !started && note.m.role == roleLocker {
				return "start-failed", fmt.Errorf("%s (pid %d) exited during start-up: %s; see %s", note.m.label(), note.m.pid, note.exit.Status, filepath.Join(r.opts.OutDir, "lockers.log"))
			}
			if started && r.allDone() {
				return "done", nil
			}
		case <-startup.C:
			var missing []string
			for _, m := range r.members {
				if m.phase < phaseReady {
					missing = append(missing, m.label())
				}
			}
			return "start-failed", fmt.Errorf("not ready within %s: %v", r.opts.StartupTimeout, missing)
		case <-timeout:
			return "timeout", nil
		case <-deferredC:
			deferredC = nil
			work := deferred
			deferred = 0
			if work&workPoll != 0 {
				if why := r.pollWork(started); why != "" {
					return why, nil
				}
				if started && r.allDone() { // an exit settled
					return "done", nil
				}
			}
			if work&workBeat != 0 {
				r.beatWork()
			}
		case <-poll.C:
			if end := r.quietEnd(time.Now()); !end.IsZero() {
				deferred |= workPoll
				if deferredC == nil {
					deferredC = time.After(time.Until(end))
				}
				continue
			}
			if why := r.pollWork(started); why != "" {
				return why, nil
			}
			if started && r.allDone() { // an exit settled
				return "done", nil
			}
		case <-beat.C:
			if end := r.quietEnd(time.Now()); !end.IsZero() {
				deferred |= workBeat
				if deferredC == nil {
					deferredC = time.After(time.Until(end))
				}
				continue
			}
			r.beatWork()
		case <-progress.C:
			if r.opts.Progress != nil && started && r.quietEnd(time.Now()).IsZero() {
				r.opts.Progress(r.status())
			}
		}
	}
}

// The controller's periodic work that waits for the end of an instant's window.
const (
	workPoll = 1 << iota
	workBeat
)

// pollWork resends queues not acked and asks for a hang; it says why the run ends, or "".
func (r *run) pollWork(started bool) string {
	r.settleExits(false)
	r.resendCommands()
	// A cycle seen while messages still wait to be read may be made of one locker's old state
	// and another's new one: judge only a drained queue.
	if started && r.opts.Hang != nil && r.drained() {
		if why := r.opts.Hang(time.Now().UnixNano()); why != "" {
			r.opts.Log.Info("run ends on a hang", "why", why)
			return "hang"
		}
	}
	return ""
}

// drained says no message waits between the socket and the loop (the socket's queue, the
// ingest stage).
func (r *run) drained() bool { return r.conn.Backlog()+r.ingest.backlog() == 0 }

// beatWork notes the nodes gone silent.
func (r *run) beatWork() {
	r.checkSilence(time.Now())
}

// beatEvery is the controller's heartbeat: a locker that hears nothing for five of them leaves.
const beatEvery = time.Second

// beat starts telling every accepted member, once a second, that the controller is there, and
// returns what stops it. The beats go from a goroutine of their own, not from the loop: a loop
// that encoded a thousand queues, read /proc for a snapshot, or waited for a core on a host its
// lockers kept busy sent no beat for seconds, and the lockers, hearing nothing for 5 s, left
// without their goodbye. A member goes without beats only when the controller's process is
// gone or stopped. They keep out of the windows around the run's instants, as the loop's own
// periodic work does.
func (r *run) beat() (stop func()) {
	frame, err := proto.Encode(&proto.Message{Kind: proto.KindBeat, Beat: &proto.Beat{}})
	if err != nil {
		panic(err) // a constant message
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(beatEvery)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if end := r.quietEnd(time.Now()); !end.IsZero() {
				select {
				case <-done:
					return
				case <-time.After(time.Until(end)):
				}
			}
			r.conn.Broadcast(frame)
		}
	}()
	return func() { close(done); <-finished }
}

func (r *run) allReady() bool {
	for _, m := range r.members {
		if m.phase < phaseReady || m.phase == phaseExited {
			return false
		}
	}
	return true
}

// allDone says whether every locker has finished its queue (idle, left, or exited).
// Observers do not count: they watch until told to stop.
func (r *run) allDone() bool {
	for _, m := range r.members {
		if m.role == roleLocker && !m.done() {
			return false
		}
	}
	return true
}

// allGone says whether nothing of any member runs any more.
func (r *run) allGone() bool {
	for _, m := range r.members {
		if !m.gone() {
			return false
		}
	}
	return true
}

// send queues msg for m; it never waits for m to read (wire's outbox). It says whether the
// message was queued.
func (r *run) send(m *member, msg *proto.Message) bool {
	frame, err := proto.Encode(msg)
	if err != nil {
		r.opts.Log.Error("message not encodable", "to", m.label(), "kind", msg.Kind, "err", err)
		return false
	}
	return r.sendFrame(m, frame)
}

// sendFrame queues an encoded message for m. One that cannot be queued because m is not reading
// is counted (its exit event and the run's unresponsive members name it); a beat waiting
// already stands for the next (proto.Kind.Coalesces), so beats never fill an outbox.
func (r *run) sendFrame(m *member, frame []byte) bool {
	if m.identity == "" {
		return false
	}
	err := r.conn.SendFrameTo(m.identity, frame)
	switch {
	case err == nil:
		return true
	case errors.Is(err, wire.ErrNotReading):
		if m.undelivered == 0 {
			r.opts.Log.Warn("member not reading: messages to it are not delivered", "member", m.label(), "pid", m.pid,
				"queued_bytes", r.conn.Queued(m.identity))
		}
		m.undelivered++
	case errors.Is(err, wire.ErrNoPeer):
		// Its connection has gone: its exit, or its silence, tells the run.
		r.opts.Log.Debug("send to a member no longer connected", "to", m.label(), "err", err)
	default:
		r.opts.Log.Warn("send failed", "to", m.label(), "err", err)
	}
	return false
}

// handle processes one incoming message.
func (r *run) handle(in incoming) {
	if in.Err != nil {
		r.opts.Log.Warn("bad message", "from", in.From, "err", in.Err)
		return
	}
	msg := in.Msg
	if msg.Kind == proto.KindHello {
		r.hello(in.From, msg)
		return
	}
	m := r.byIdent[in.From]
	if m == nil {
		r.opts.Log.Warn("message from unknown identity", "from", in.From, "kind", msg.Kind)
		return
	}
	r.count(m, msg)
	m.lastHeard = in.At
	r.heard(m, in.At)
	switch msg.Kind {
	case proto.KindPing:
		r.send(m, &proto.Message{Kind: proto.KindPong, Pong: &proto.Pong{T1: msg.Ping.T1, TC: time.Now().UnixNano()}})
	case proto.KindReady:
		if m.to(phaseReady) {
			m.tid = msg.Ready.TID
		}
	case proto.KindAck:
		if msg.Ack.Kind == proto.KindCommands {
			m.queue.acked = true
		}
	case proto.KindSpans:
		r.lockerSpans(m, msg.SpansRaw, in.spans, in.decodeErr)
	case proto.KindIdle:
		m.to(phaseIdle)
	case proto.KindSnapshot:
		r.snapshotReply(m, msg.Snapshot)
	case proto.KindBye:
		m.to(phaseLeft)
		m.lost += msg.Bye.Dropped
		r.send(m, &proto.Message{Kind: proto.KindAck, Ack: &proto.Ack{Kind: proto.KindBye, Seq: msg.Seq}})
	}
}

// count tracks the member's sequence numbers (a gap is a lost message) and its backlog.
func (r *run) count(m *member, msg *proto.Message) {
	seq := msg.Seq
	m.received++
	if seq > m.lastSeq+1 {
		m.lost += seq - m.lastSeq - 1
	}
	if seq > m.lastSeq {
		m.lastSeq = seq
		m.backlog = msg.Backlog
	}
}

func (r *run) hello(from string, msg *proto.Message) {
	h := msg.Hello
	refuse := func(why string) {
		if r.refused[from] {
			return // one answer per stranger: its resent hellos must not make us write on
		}
		if len(r.refused) < 10000 {
			r.refused[from] = true
		}
		r.opts.Log.Warn("hello refused", "from", from, "why", why)
		_ = r.conn.SendTo(from, &proto.Message{Kind: proto.KindRefuse, Refuse: &proto.Refuse{Reason: why}})
		r.conn.Drop(from, time.Second)
	}
	if h.Version != proto.Version {
		refuse(fmt.Sprintf("protocol version %d, controller speaks %d", h.Version, proto.Version))
		return
	}
	if h.Token != r.token {
		refuse("bad token")
		return
	}
	var m *member
	for _, c := range r.members {
		if c.id == h.LockerID && c.role.String() == h.Role {
			m = c
		}
	}
	if m == nil {
		refuse(fmt.Sprintf("no %s %d in this run", h.Role, h.LockerID))
		return
	}
	if m.identity != "" && m.identity != from {
		refuse(fmt.Sprintf("%s already connected", m.label()))
		return
	}
	if m.identity == "" {
		if !m.to(phaseWelcomed) {
			refuse(fmt.Sprintf("%s is %s", m.label(), m.phase))
			return
		}
		m.identity = from
		r.byIdent[from] = m
		r.conn.Trust(from)
		if m.remote {
			m.pid, m.node = h.PID, h.Node
			if m.node == "" {
				m.node = h.Host
			}
		}
	}
	r.count(m, msg)
	m.lastHeard = time.Now()
	if time.Since(m.welcomedAt) < time.Second {
		return // a resent hello that crossed our welcome
	}
	m.welcomedAt = time.Now()
	r.send(m, &proto.Message{Kind: proto.KindWelcome, Welcome: &proto.Welcome{
		TraceID: r.traceID, ParentSpanID: r.rootID, Poll: r.opts.Poll, Heartbeat: time.Second,
		Kind: r.opts.Kind, Style: r.opts.Style, Tries: r.opts.Tries, Interval: r.opts.Interval,
		SameClock: !m.remote && h.Host == r.host,
		Spin:      r.spin(), KeepPriority: r.opts.KeepPriority,
	}})
}

// sendCommands hands every member its queue. The scenario starts a little after now, so that
// every queue has arrived before the first "@+0" instant.
func (r *run) sendCommands() {
	lead := 100*time.Millisecond + time.Duration(len(r.members))*time.Millisecond
	r.scenAt = time.Now().Add(lead)
	r.runEnd = time.Now().Add(r.opts.Timeout)
	peers := make([]proto.Peer, 0, len(r.members))
	for _, m := range r.members {
		if m.role == roleLocker {
			peers = append(peers, proto.Peer{LockerID: m.id, Node: m.node, PID: m.pid, TID: m.tid})
		}
	}
	instants := instantsOf(r.opts.Queues, r.scenAt)
	enc, err := proto.NewCommandsEncoder(proto.Commands{Start: r.scenAt, Peers: peers, End: r.runEnd, Instants: instants})
	if err != nil {
		r.opts.Log.Error("queues not encodable", "err", err) // a time or a table: cannot happen
	}
	r.queues = enc
	local := 0
	for _, m := range r.members {
		if !m.remote && m.role == roleLocker {
			local++
		}
	}
	r.quiet.Store(&quietWindows{instants: instants,
		trail: max(2*time.Millisecond, time.Duration(local)*500*time.Microsecond/time.Duration(runtime.NumCPU()))})
	for _, m := range r.members {
		if m.to(phaseRunning) {
			r.sendQueue(m)
		}
	}
	r.writeRoot(false)
}

// instantsOf returns the distinct instants of the queues' `@` commands, in order, at most
// proto.MaxInstants (the earliest).
func instantsOf(queues [][]proto.Command, start time.Time) []time.Time {
	seen := map[int64]bool{}
	var out []time.Time
	for _, q := range queues {
		for _, c := range q {
			if !c.HasAt {
				continue
			}
			t := start.Add(c.After)
			if !c.Abs.IsZero() {
				t = c.Abs
			}
			if !seen[t.UnixNano()] {
				seen[t.UnixNano()] = true
				out = append(out, t)
			}
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	if len(out) > proto.MaxInstants {
		out = out[:proto.MaxInstants]
	}
	return out
}

// quietLead and the run's trail bound the window around each instant in which the controller
// defers its periodic work (the hang check, beats, progress): on a crowded host those took the
// cores from lockers about to fire (10 lockers: spread 0.8 ms with the 100 ms poll, 0.54 ms, the
// floor's, without).
const quietLead = 5 * time.Millisecond

// quietWindows are the run's instants and the trail after each.
type quietWindows struct {
	instants []time.Time
	trail    time.Duration
}

// quietEnd returns the end of the window around an instant that now lies in, or the zero time.
func (r *run) quietEnd(now time.Time) time.Time {
	q := r.quiet.Load()
	if q == nil {
		return time.Time{}
	}
	i, _ := slices.BinarySearchFunc(q.instants, now.Add(-q.trail), func(t, x time.Time) int { return t.Compare(x) })
	if i < len(q.instants) && !now.Before(q.instants[i].Add(-quietLead)) {
		return q.instants[i].Add(q.trail)
	}
	return time.Time{}
}

// resendCommands repeats a queue whose ack has not come within a second (app-level ack: a
// message the transport lost must not leave a locker without work), or that could not be
// queued at all. A copy still waiting to be written to the member is not lost: another one
// would only add to what a slow reader has to read.
func (r *run) resendCommands() {
	for _, m := range r.members {
		q := &m.queue
		if m.phase >= phaseRunning && m.connected() && !q.acked && q.sends < 5 && time.Since(q.sentAt) > time.Second &&
			r.conn.Queued(m.identity) == 0 {
			r.sendQueue(m)
		}
	}
}

// sendQueue sends m its queue (observers get none) with the scenario start and the peer table,
// encoded once for all its sends.
func (r *run) sendQueue(m *member) {
	if m.queue.frame == nil {
		if r.queues == nil {
			return
		}
		var q []proto.Command
		if m.role == roleLocker {
			q = r.opts.Queues[m.id]
		}
		frame, err := r.queues.Encode(q)
		if err != nil {
			r.opts.Log.Error("queue not encodable", "to", m.label(), "err", err)
			return
		}
		m.queue.frame = frame
	}
	if r.sendFrame(m, m.queue.frame) {
		m.queue.sentAt = time.Now()
		m.queue.sends++
	}
}

// lockerSpans takes in a batch a member sent: b is the request as it arrived (OTLP protobuf),
// which goes to the trace file as it is; dec is the same request decoded by the ingest stage
// (nil and err when it did not decode).
func (r *run) lockerSpans(from *member, b []byte, dec *tracefile.Decoded, err error) {
	r.write(b)
	if err != nil {
		r.opts.Log.Error("spans not decodable", "from", from.label(), "err", err)
		return
	}
	r.share(from, r.merger.AddDecoded(dec), b, nil)
}

// spans writes a batch of the controller's own to the trace file at once, then shares it with
// the watchers: b is the request encoded, req the same decoded.
func (r *run) spans(b []byte, req *coltracepb.ExportTraceServiceRequest) {
	r.write(b)
	touched, err := r.merger.AddEncoded(b)
	if err != nil {
		r.opts.Log.Error("spans not decodable", "from", "controller", "err", err)
	}
	r.share(nil, touched, b, req)
}

func (r *run) write(b []byte) {
	if err := r.writer.WriteEncoded(b); err != nil {
		r.opts.Log.Error("trace file", "err", err)
	}
}

// share hands the merged spans a batch touched to the watchers, and the batch to the collector;
// from is the member that sent it, nil for the controller's own records.
func (r *run) share(from *member, touched []*tracefile.Span, b []byte, req *coltracepb.ExportTraceServiceRequest) {
	for _, s := range touched {
		r.live.observe(s)
		if from != nil && (s.Name == semconv.SpanLocker || s.Name == semconv.SpanObserver) {
			from.lockerSpanID, from.traceID = s.SpanID, s.TraceID
		}
		if r.opts.Watch != nil {
			r.opts.Watch(s)
		}
	}
	if r.opts.Forward != nil {
		if req == nil {
			var err error
			if req, err = tracefile.Decode(b); err != nil {
				return
			}
		}
		r.opts.Forward(req.ResourceSpans)
	}
}

// writeRecord writes spans the controller made itself.
func (r *run) writeRecord(rs *tracepb.ResourceSpans) {
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{rs}}
	b, err := tracefile.Encode(req)
	if err != nil {
		r.opts.Log.Error("spans not encodable", "err", err)
		return
	}
	r.spans(b, req)
}

// exitSettle bounds how long a member's end waits, once the input is drained, for its messages
// still on their way (exitSettleMax bounds the wait whatever the input). Its process may end
// (its goodbye acked, or unacked after 2 s) while its goodbye and last records still wait in
// the controller's socket and queues: judged at once, the member was one that ended without
// its goodbye, and the backlog its previous message reported was counted lost (at 1000
// lockers, 761 exits said so of lockers whose final records were all in the trace).
const exitSettle = 3 * time.Second

// exitSettleMax bounds the wait while messages are still being taken in: exitSettle counts only
// once the input is drained, since a dead member sends nothing more and what it sent is in the
// backlog being read (at 1000 lockers on 2 cores the controller read its input for seconds
// after the exits, and 426 goodbyes still queued were judged missing at exitSettle).
const exitSettleMax = 30 * time.Second

// exited notes that m's process has ended. While m's connection is still open (its reader has
// not met the end of the stream yet) and m has not said goodbye, the exit waits (settleExits):
// what m sent before it ended is taken first.
func (r *run) exited(note exitNote) {
	m := note.m
	if m.phase != phaseExited && !m.saidBye() && m.identity != "" && r.conn.Connected(m.identity) {
		r.settling = append(r.settling, settling{note: note, since: time.Now()})
		return
	}
	r.exitNow(note)
}

func (r *run) exitNow(note exitNote) {
	m := note.m
	m.exitPhase = m.phase
	if !m.to(phaseExited) {
		return
	}
	m.exit = note.exit
	r.recordExit(m)
}

// settling is an exit waiting for the member's last messages.
type settling struct {
	note  exitNote
	since time.Time
}

// settleExits takes the exits whose member said goodbye, or, once every message taken from the
// socket has been handled, whose connection has closed or that have waited exitSettle; those
// that have waited exitSettleMax whatever the input; all of them with force.
func (r *run) settleExits(force bool) {
	if len(r.settling) == 0 {
		return
	}
	drained := r.drained()
	kept := r.settling[:0]
	for _, s := range r.settling {
		m := s.note.m
		waited := time.Since(s.since)
		if force || m.saidBye() || drained && (waited > exitSettle || !r.conn.Connected(m.identity)) || waited > exitSettleMax {
			r.exitNow(s.note)
			continue
		}
		kept = append(kept, s)
	}
	r.settling = kept
}

// spinWindow is how long before an instant a locker spins when it has a core to itself: enough
// to absorb the timer's wake-up latency.
const spinWindow = 300 * time.Microsecond

// spin chooses the lockers' spin window: none when this host runs more members than it has
// cores, where spinners would keep the others from waking up on time.
func (r *run) spin() time.Duration {
	if len(r.members) > runtime.NumCPU() {
		return 0
	}
	return spinWindow
}
