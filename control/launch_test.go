package control_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/probe"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"github.com/lockprobe/lockprobe/wire"
)

// fakeGroup stands for a launcher's job step: members run as goroutines of the test, the group
// ends when they all have.
type fakeGroup struct {
	exited  chan struct{}
	err     error
	stopped atomic.Bool
	cancel  context.CancelFunc
}

func (g *fakeGroup) Exited() <-chan struct{} { return g.exited }
func (g *fakeGroup) Err() error              { return g.err }
func (g *fakeGroup) Stop(ctx context.Context) error {
	g.stopped.Store(true)
	g.cancel()
	select {
	case <-g.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// launchWith returns an Options.Launch that runs member(spec, ctx) for every spec on a
// goroutine and records the specs it was given.
func launchWith(got *[]control.Spec, g **fakeGroup, member func(context.Context, control.Spec)) func(context.Context, []control.Spec) (control.Group, error) {
	return func(_ context.Context, specs []control.Spec) (control.Group, error) {
		*got = specs
		ctx, cancel := context.WithCancel(context.Background())
		fg := &fakeGroup{exited: make(chan struct{}), cancel: cancel}
		*g = fg
		var wg sync.WaitGroup
		for _, s := range specs {
			wg.Add(1)
			go func() { defer wg.Done(); member(ctx, s) }()
		}
		go func() { wg.Wait(); close(fg.exited) }()
		return fg, nil
	}
}

// runLocker runs a probe.Locker for spec as a launched member would.
func runLocker(t *testing.T) func(context.Context, control.Spec) {
	return func(ctx context.Context, s control.Spec) {
		l, err := probe.New(probe.Options{Endpoint: s.Endpoint, ID: s.ID, Role: s.Role, Node: s.Node, Token: s.Token,
			Allow: []string{s.File}, StartupTimeout: s.StartupTimeout, Log: quiet})
		if err != nil {
			t.Error(err)
			return
		}
		_ = l.Run(ctx)
	}
}

func launchOptions(t *testing.T, text string, procs int, nodeOf []int, nodes ...string) control.Options {
	file := filepath.Join(t.TempDir(), "f")
	o := baseOptions(t, queues(t, text, procs, file), file)
	o.Start = func(control.Spec) (control.Process, error) {
		t.Error("a launched run started a member on this host")
		return nil, errors.New("no")
	}
	o.Listen, o.Nodes, o.NodeOf, o.Launcher, o.Delivery = "tcp://127.0.0.1:0", nodes, nodeOf, "test", "shared path /x"
	return o
}

// TestLaunchedMembers: with a launcher, the controller starts nothing itself: it hands the
// launcher one spec per member (lockers on their nodes, an observer per node) with its TCP
// endpoint and the token, and the run ends when they are done and the group has ended.
func TestLaunchedMembers(t *testing.T) {
	o := launchOptions(t, "all: file@{file}\nall: write@+50ms\nall: releaseif\nall: stop\n", 3, []int{0, 1, 0}, "n0", "n1")
	o.NoObservers = false
	var specs []control.Spec
	var g *fakeGroup
	o.Launch = launchWith(&specs, &g, runLocker(t))
	res, err := control.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.EndReason != "done" {
		t.Errorf("end reason %q, want done", res.EndReason)
	}
	var got []string
	for _, s := range specs {
		got = append(got, s.Role+"@"+s.Node)
		if !strings.HasPrefix(s.Endpoint, "tcp://127.0.0.1:") || s.Token == "" || s.File != o.Files[0] {
			t.Errorf("spec %+v: want the TCP endpoint, the token and the file", s)
		}
	}
	if want := []string{"locker@n0", "locker@n1", "locker@n0", "observer@n0", "observer@n1"}; !slices.Equal(got, want) {
		t.Errorf("specs %v, want %v", got, want)
	}
	if g.stopped.Load() {
		t.Error("the group was cancelled although its members left by themselves")
	}
	tr := readTrace(t, res)
	nodes := map[int64]string{}
	var root *tracefile.Span
	for _, s := range tr.Spans {
		switch s.Name {
		case semconv.SpanLocker:
			nodes[s.Resource.IntOr(semconv.LockerID, -9)] = s.Resource.Str(semconv.Node)
		case semconv.SpanRun:
			root = s
		}
	}
	if nodes[0] != "n0" || nodes[1] != "n1" || nodes[2] != "n0" {
		t.Errorf("lockers' nodes %v, want 0 and 2 on n0, 1 on n1", nodes)
	}
	if root == nil || root.Attrs.Str(semconv.RunLauncher) != "test" || root.Attrs.Str(semconv.RunDelivery) != "shared path /x" {
		t.Errorf("root span does not say the launcher and the delivery: %v", root)
	}
}

// TestLaunchFailureIsAStartError: a group that ends before its members are ready (a node where
// the file is missing) fails the start with the launcher's reason.
func TestLaunchFailureIsAStartError(t *testing.T) {
	o := launchOptions(t, "all: file@{file}\n", 2, []int{0, 1}, "n0", "n1")
	why := errors.New("node n1: locker 1: -allow /x: no such file or directory")
	o.Launch = func(context.Context, []control.Spec) (control.Group, error) {
		g := &fakeGroup{exited: make(chan struct{}), err: why, cancel: func() {}}
		close(g.exited)
		return g, nil
	}
	_, err := control.Run(t.Context(), o)
	var se *control.StartError
	if !errors.As(err, &se) || !errors.Is(err, why) {
		t.Fatalf("Run: %v, want a StartError wrapping the launcher's reason", err)
	}
}

// partitioned is a launched member that speaks the protocol by hand and, once it has its queue,
// goes quiet for quiet (forever if 0 before the end of ctx), then says it is idle and leaves
// when told.
func partitioned(t *testing.T, quiet time.Duration) func(context.Context, control.Spec) {
	return func(ctx context.Context, spec control.Spec) {
		c, err := wire.Dial(ctx, spec.Endpoint, "speaker-"+spec.Node)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		s := &speaker{t: t, c: c}
		if w, _ := s.join(spec, 7, spec.Node, spec.Node); w == nil {
			return
		}
		if quiet == 0 {
			<-ctx.Done() // never heard again; the launcher cancels it
			return
		}
		select {
		case <-time.After(quiet):
		case <-ctx.Done():
			return
		}
		s.send(&proto.Message{Kind: proto.KindIdle, Idle: &proto.Idle{}})
		if s.await(proto.KindStop) != nil {
			s.send(&proto.Message{Kind: proto.KindBye, Bye: &proto.Bye{}})
			s.await(proto.KindAck)
		}
	}
}

func healed(s *tracefile.Span) bool {
	v, _ := s.Attrs.Get(semconv.SilenceHealed)
	b, _ := v.(bool)
	return b
}

// silences returns the run's lockprobe.silence spans.
func silences(tr *tracefile.Trace) []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == semconv.SpanSilence {
			out = append(out, s)
		}
	}
	return out
}

// TestSilentNodeIsWaitedFor: a node says nothing for 2.5 s after it got its queue. It is not
// taken for gone: the run waits, and ends when the node comes back and is done; the trace has
// the node's silence with its interval.
func TestSilentNodeIsWaitedFor(t *testing.T) {
	o := launchOptions(t, "all: file@{file}\n", 1, []int{0}, "n0")
	o.SilentAfter = 500 * time.Millisecond
	var specs []control.Spec
	var g *fakeGroup
	o.Launch = launchWith(&specs, &g, partitioned(t, 2500*time.Millisecond))
	t0 := time.Now()
	res, err := control.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.EndReason != "done" || time.Since(t0) < 2500*time.Millisecond {
		t.Errorf("run ended %s after %v; want done, after the node came back", res.EndReason, time.Since(t0))
	}
	sil := silences(readTrace(t, res))
	if len(sil) != 1 {
		t.Fatalf("%d silence spans, want 1", len(sil))
	}
	s := sil[0]
	d := time.Duration(s.End - s.Start)
	if s.Attrs.Str(semconv.Node) != "n0" || !healed(s) || d < 2*time.Second || d > 4*time.Second {
		t.Errorf("silence of %s for %v healed %v; want n0, about 2.5 s, healed", s.Attrs.Str(semconv.Node), d, healed(s))
	}
}

// TestNodeThatNeverReturnsEndsOnTime: a node falls silent for good. The run ends at its
// timeout plus a bounded grace, the silence runs to the end unhealed, and the launcher is told
// to cancel what it still runs.
func TestNodeThatNeverReturnsEndsOnTime(t *testing.T) {
	o := launchOptions(t, "all: file@{file}\n", 2, []int{0, 1}, "n0", "n1")
	o.SilentAfter, o.Timeout, o.Grace = 500*time.Millisecond, 2*time.Second, 500*time.Millisecond
	var specs []control.Spec
	var g *fakeGroup
	o.Launch = launchWith(&specs, &g, partitioned(t, 0))
	t0 := time.Now()
	res, err := control.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(t0)
	if res.EndReason != "timeout" || wall > o.Timeout+10*time.Second {
		t.Errorf("run ended %s after %v; want timeout soon after %v", res.EndReason, wall, o.Timeout)
	}
	if !g.stopped.Load() {
		t.Error("the launcher was not told to cancel the silent members")
	}
	sil := silences(readTrace(t, res))
	if len(sil) != 2 {
		t.Fatalf("%d silence spans, want one per node", len(sil))
	}
	for _, s := range sil {
		if healed(s) || s.End != res.End.UnixNano() {
			t.Errorf("silence of %s: healed %v, end %d; want unhealed, to the run's end %d", s.Attrs.Str(semconv.Node), healed(s), s.End, res.End.UnixNano())
		}
	}
}
