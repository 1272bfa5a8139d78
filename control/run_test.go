package control_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/probe"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/scenario"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"github.com/lockprobe/lockprobe/wire"
)

// The controller under test runs in the test process; so do its members, as probe.Lockers on
// goroutines (Options.Start) — ofd locks belong to open file descriptions, so lockers of one
// process still exclude each other — or as fakes that speak the protocol by hand.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func queues(t *testing.T, text string, procs int, file string) [][]proto.Command {
	t.Helper()
	sc, err := scenario.Parse("test", strings.NewReader(text), scenario.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sc.Queues(procs, []string{file})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// inProcess is a member running as a probe.Locker on a goroutine of the test process.
type inProcess struct {
	cancel context.CancelFunc
	done   chan struct{}
	exit   control.Exit
}

func (p *inProcess) PID() int { return os.Getpid() }
func (p *inProcess) Wait() control.Exit {
	<-p.done
	return p.exit
}
func (p *inProcess) Kill() error { p.cancel(); return nil }

func startInProcess(s control.Spec) (control.Process, error) {
	l, err := probe.New(probe.Options{Endpoint: s.Endpoint, ID: s.ID, Role: s.Role, Node: s.Node, Token: s.Token,
		Allow: []string{s.File}, StartupTimeout: s.StartupTimeout, Log: quiet})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		err := l.Run(ctx)
		p.exit = control.Exit{At: time.Now(), Status: "exit status 0"}
		if err != nil {
			p.exit.Status = "error: " + err.Error()
		}
	}()
	return p, nil
}

// capture wraps the real listener and keeps the socket for the test.
type capture struct {
	mu   sync.Mutex
	conn *wire.Conn
}

func (c *capture) listen(ctx context.Context, o wire.ListenOptions) (*wire.Conn, error) {
	conn, err := wire.Listen(ctx, o)
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	return conn, err
}

func (c *capture) get() *wire.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

func baseOptions(t *testing.T, q [][]proto.Command, file string) control.Options {
	return control.Options{Files: []string{file}, Queues: q, Kind: semconv.KindOFD, OutDir: filepath.Join(t.TempDir(), "out"),
		Timeout: 20 * time.Second, Start: startInProcess, Log: quiet, Grace: time.Second, NoObservers: true}
}

func readTrace(t *testing.T, res *control.Result) *tracefile.Trace {
	t.Helper()
	tr, err := tracefile.Open(res.TracePath)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestRunInProcess: three ofd lockers contend for one write lock; the run ends done, each is
// granted once, no TCP port is opened, and the output is the user's alone.
func TestRunInProcess(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\nall: write@+50ms\nall: releaseif\nall: stop\n", 3, file), file)
	var c capture
	o.Listener = c.listen
	res, err := control.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.EndReason != "done" {
		t.Errorf("end reason %q, want done", res.EndReason)
	}
	if ep := c.get().RemoteEndpoint(); ep != "" {
		t.Errorf("a local run listens on TCP: %s", ep)
	}
	tr := readTrace(t, res)
	granted := map[int64]int{}
	for _, s := range tr.Spans {
		if s.Name == semconv.SpanAcquire && s.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() {
			granted[s.Attrs.IntOr(semconv.LockerID, -1)]++
		}
	}
	if len(granted) != 3 || granted[0] != 1 || granted[1] != 1 || granted[2] != 1 {
		t.Errorf("grants per locker %v, want one each of 0, 1, 2", granted)
	}
	for path, want := range map[string]os.FileMode{res.OutDir: 0o700, res.TracePath: 0o600, filepath.Join(res.OutDir, "lockers.log"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(path), st.Mode().Perm(), want)
		}
	}
}

// fakeProc is a member process that never connects and ends only when killed.
type fakeProc struct {
	once   sync.Once
	killed chan struct{}
}

func newFake() *fakeProc        { return &fakeProc{killed: make(chan struct{})} }
func (p *fakeProc) PID() int    { return 1 << 22 } // above pid_max's default: nobody's
func (p *fakeProc) Kill() error { p.once.Do(func() { close(p.killed) }); return nil }
func (p *fakeProc) Wait() control.Exit {
	<-p.killed
	return control.Exit{At: time.Now(), Status: "signal: killed", Signal: "killed"}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestShutdownAfterSocketClosed: once the socket has closed, shutdown and killAll used to keep
// selecting on its closed channel — a busy loop for the grace period and the kill wait. Now
// they wait for the members' exits, asleep, and kill them on time.
func TestShutdownAfterSocketClosed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\n", 2, file), file)
	var c capture
	o.Listener = c.listen
	var mu sync.Mutex
	var fakes []*fakeProc
	o.Start = func(control.Spec) (control.Process, error) {
		p := newFake()
		mu.Lock()
		fakes = append(fakes, p)
		if len(fakes) == 2 { // both lockers are started: close the socket
			go func() { time.Sleep(100 * time.Millisecond); c.get().Close() }()
		}
		mu.Unlock()
		return p, nil
	}
	o.Grace = 1500 * time.Millisecond
	cpu0, wall0 := cpuTime(), time.Now()
	res, err := control.Run(t.Context(), o)
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	if err == nil || !strings.Contains(err.Error(), "socket closed") {
		t.Errorf("Run: %v, want the socket's closing", err)
	}
	if res == nil || len(res.Killed) != 2 {
		t.Fatalf("result %+v: want both members killed", res)
	}
	// A busy loop burns a core for the whole grace period; waiting burns next to nothing.
	t.Logf("Run used %v of CPU in %v after its socket closed", cpu, wall.Round(time.Millisecond))
	if cpu > wall/3 {
		t.Errorf("Run used %v of CPU in %v: it spins on the closed socket", cpu, wall)
	}
}

// TestListenFailureWritesNothing: a controller that cannot listen leaves the output folder and a
// previous run's trace in it untouched, and says so with a ListenError.
func TestListenFailureWritesNothing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\n", 1, file), file)
	if err := os.MkdirAll(o.OutDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(o.OutDir, tracefile.FileName)
	if err := os.WriteFile(old, []byte("the previous run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.Remote, o.Listen = 1, "tcp://127.0.0.1:1" // a port only root may bind, and taken or not, bad for us
	o.Listener = func(context.Context, wire.ListenOptions) (*wire.Conn, error) {
		return nil, errors.New("bind: address already in use")
	}
	started := false
	o.Start = func(control.Spec) (control.Process, error) { started = true; return newFake(), nil }
	res, err := control.Run(t.Context(), o)
	var le *control.ListenError
	if res != nil || !errors.As(err, &le) {
		t.Fatalf("Run = %v, %v; want a ListenError", res, err)
	}
	if started {
		t.Error("a member was started although the controller could not listen")
	}
	if b, _ := os.ReadFile(old); string(b) != "the previous run\n" {
		t.Errorf("the previous trace was changed: %q", b)
	}
}

// TestStartFailureStopsTheOthers: when one member cannot be started, those already started are
// stopped and killed, and Run says what failed.
func TestStartFailureStopsTheOthers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\n", 3, file), file)
	o.Grace = 200 * time.Millisecond
	var fakes []*fakeProc
	o.Start = func(s control.Spec) (control.Process, error) {
		if s.ID == 2 {
			return nil, errors.New("no such executable")
		}
		p := newFake()
		fakes = append(fakes, p)
		return p, nil
	}
	res, err := control.Run(t.Context(), o)
	if res != nil || err == nil || !strings.Contains(err.Error(), "start locker 2: no such executable") {
		t.Fatalf("Run = %v, %v", res, err)
	}
	for i, p := range fakes {
		select {
		case <-p.killed:
		default:
			t.Errorf("member %d was left running", i)
		}
	}
}

// speaker is a member that speaks the protocol by hand, so that the test decides exactly what
// the controller receives.
type speaker struct {
	t   *testing.T
	c   *wire.Conn
	seq uint64
}

func (s *speaker) send(m *proto.Message) {
	s.seq++
	m.Seq = s.seq
	if err := s.c.Send(m); err != nil {
		s.t.Error(err)
	}
}

// join says hello as spec's member (pid, host, node), becomes ready and acks its queue; it
// returns the welcome and the queue, or nils when one did not come (the test has failed).
func (s *speaker) join(spec control.Spec, pid int, host, node string) (*proto.Message, *proto.Message) {
	s.send(&proto.Message{Kind: proto.KindHello, Hello: &proto.Hello{Version: proto.Version, LockerID: spec.ID, Role: spec.Role,
		PID: pid, Host: host, Node: node, Token: spec.Token}})
	w := s.await(proto.KindWelcome)
	if w == nil {
		return nil, nil
	}
	s.send(&proto.Message{Kind: proto.KindReady, Ready: &proto.Ready{}})
	cmds := s.await(proto.KindCommands)
	if cmds == nil {
		return nil, nil
	}
	s.send(&proto.Message{Kind: proto.KindAck, Ack: &proto.Ack{Kind: proto.KindCommands, Seq: cmds.Seq}})
	return w, cmds
}

func (s *speaker) await(k proto.Kind) *proto.Message {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case in, ok := <-s.c.In():
			if !ok {
				s.t.Errorf("socket closed while waiting for %s", k)
				return nil
			}
			if in.Err == nil && in.Msg.Kind == k {
				return in.Msg
			}
		case <-timeout:
			s.t.Errorf("no %s within 5s", k)
			return nil
		}
	}
}

// TestDeadMemberUnsentRecordsCounted: a locker dies without its goodbye after a message that
// said five records were still queued behind it, and after a gap of two in its sequence
// numbers. The run counts seven lost, and its exit event says it never said goodbye.
func TestDeadMemberUnsentRecordsCounted(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\n", 1, file), file)
	o.Start = func(spec control.Spec) (control.Process, error) {
		p := newFake()
		go func() {
			c, err := wire.Dial(context.Background(), spec.Endpoint, "speaker")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			defer p.Kill() // it dies
			s := &speaker{t: t, c: c}
			host, _ := os.Hostname()
			w, _ := s.join(spec, p.PID(), host, "")
			if w == nil {
				return
			}
			s.seq += 2 // two messages lost on the way
			s.send(&proto.Message{Kind: proto.KindSpans, Backlog: 5, SpansRaw: lockerSpan(t, w.Welcome, spec.ID)})
			time.Sleep(200 * time.Millisecond) // let it arrive before the death is noticed
		}()
		return p, nil
	}
	res, err := control.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	lost, exit := lostAndExit(readTrace(t, res))
	if lost != 7 {
		t.Errorf("messages lost %d, want 7 (a gap of 2, and 5 never sent)", lost)
	}
	if exit == nil {
		t.Fatal("no locker.exit event")
	}
	gv, _ := exit.Attrs.Get(semconv.ExitGoodbye)
	if g, ok := gv.(bool); !ok || g {
		t.Errorf("exit event says goodbye %v (%v), want false", gv, ok)
	}
	if n := exit.Attrs.IntOr(semconv.ExitUnsent, -1); n != 5 {
		t.Errorf("exit event says %d unsent, want 5", n)
	}
}

// lostAndExit reads a one-member run's trace: the messages lost (root span) and the member's
// locker.exit event, nil when there is none.
func lostAndExit(tr *tracefile.Trace) (int64, *tracefile.Event) {
	var lost int64 = -1
	var exit *tracefile.Event
	for _, s := range tr.Spans {
		switch s.Name {
		case semconv.SpanRun:
			lost = s.Attrs.IntOr(semconv.RunLost, -1)
		case semconv.SpanLocker:
			for i := range s.Events {
				if s.Events[i].Name == semconv.EventExit {
					exit = &s.Events[i]
				}
			}
		}
	}
	return lost, exit
}

// lockerSpan is the partial record of a member's own lockprobe.locker span.
func lockerSpan(t *testing.T, w *proto.Welcome, id int) []byte {
	kv := func(k string, v int64) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
	}
	span := &tracepb.Span{TraceId: w.TraceID[:], SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ParentSpanId: w.ParentSpanID[:],
		Name: semconv.SpanLocker, StartTimeUnixNano: uint64(time.Now().UnixNano()), Attributes: []*commonpb.KeyValue{kv(semconv.LockerID, int64(id))}}
	b, err := tracefile.Encode(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv(semconv.LockerID, int64(id))}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span}}},
	}}})
	if err != nil {
		t.Error(err)
	}
	return b
}

// TestStrangerRefusedOnce: a peer with the wrong token gets one refusal however many hellos it
// sends (a stranger must not make the controller write on and on), and its connection is
// closed a moment later; the run goes on with its real locker.
func TestStrangerRefusedOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\nall: sleep 4s\nall: stop\n", 1, file), file)
	started := make(chan string, 1)
	real := o.Start
	o.Start = func(s control.Spec) (control.Process, error) {
		started <- s.Endpoint
		return real(s)
	}
	o.StartupTimeout = 10 * time.Second
	done := make(chan error, 1)
	go func() {
		_, err := control.Run(t.Context(), o)
		done <- err
	}()
	c, err := wire.Dial(t.Context(), <-started, "stranger")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &speaker{t: t, c: c}
	for range 5 {
		s.send(&proto.Message{Kind: proto.KindHello, Hello: &proto.Hello{Version: proto.Version, Role: "locker", PID: 1, Token: "wrong"}})
	}
	refusals, closed := 0, false
	timeout := time.After(3 * time.Second) // the run lasts 4 s: the close is the gate's, not the run's end
	for !closed {
		select {
		case in, ok := <-c.In():
			if !ok {
				closed = true
				break
			}
			if in.Err == nil && in.Msg.Kind == proto.KindRefuse {
				refusals++
			}
		case <-timeout:
			t.Fatal("the stranger's connection was not closed within 3s")
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusals for 5 hellos, want 1", refusals)
	}
	if err := <-done; err != nil {
		t.Errorf("the run: %v", err)
	}
}

// TestGoodbyeTakenAfterTheExitIsNoticed: a member's process can end before the controller has
// taken its goodbye from the socket (the bye is acked, or unacked after 2 s, and the process
// exits). Here the exit is noticed first by construction: the member's process ends, and only
// then do its last records and its goodbye arrive, before its connection closes. The member
// said goodbye; nothing is lost. Judged at the exit, it was one that ended without its goodbye
// and the 5 records its last message said were queued were counted lost.
func TestGoodbyeTakenAfterTheExitIsNoticed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, "all: file@{file}\nall: stop\n", 1, file), file)
	o.Start = func(spec control.Spec) (control.Process, error) {
		p := newFake()
		go func() {
			c, err := wire.Dial(context.Background(), spec.Endpoint, "late-bye")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			s := &speaker{t: t, c: c}
			host, _ := os.Hostname()
			w, _ := s.join(spec, p.PID(), host, "")
			if w == nil {
				return
			}
			s.send(&proto.Message{Kind: proto.KindSpans, Backlog: 5, SpansRaw: lockerSpan(t, w.Welcome, spec.ID)})
			p.Kill() // its process ends: the controller hears of it at once
			time.Sleep(300 * time.Millisecond)
			s.send(&proto.Message{Kind: proto.KindSpans, SpansRaw: lockerSpan(t, w.Welcome, spec.ID)})
			s.send(&proto.Message{Kind: proto.KindBye, Bye: &proto.Bye{}})
			time.Sleep(100 * time.Millisecond)
		}()
		return p, nil
	}
	res, err := control.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	lost, exit := lostAndExit(readTrace(t, res))
	if lost != 0 {
		t.Errorf("messages lost %d, want 0", lost)
	}
	if exit == nil {
		t.Fatal("no locker.exit event")
	}
	if g, _ := exit.Attrs.Get(semconv.ExitGoodbye); g != true {
		t.Errorf("exit event says goodbye %v, want true", g)
	}
}
