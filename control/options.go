// Package control is the lockprobe controller: it starts the locker and observer processes (or
// accepts remote ones), syncs their clocks, hands out their command queues, collects their spans
// into the trace file as they arrive, watches for hangs, ends the run on time with a snapshot,
// and leaves no process behind.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"github.com/lockprobe/lockprobe/wire"
)

// Options configure a run. The CLI fills them from flags; zero values get defaults.
type Options struct {
	// Files are the file as seen from each client (mount or node); lockers are spread over them
	// round-robin and each is its own node. Required.
	Files []string
	// Queues holds one command queue per locker; len(Queues) is the number of lockers. Required.
	Queues [][]proto.Command
	// Timeout ends the run. Optional: DefaultTimeout.
	Timeout time.Duration
	// Kind, Style, Tries, Interval are the lockers' defaults for lock commands. Optional:
	// lockmodel's defaults.
	Kind     semconv.Kind
	Style    semconv.Style
	Tries    int
	Interval time.Duration
	// Poll is the watcher's and observer's interval and the online detector's period. Optional:
	// lockmodel.DefaultPoll.
	Poll time.Duration
	// KeepPriority tells the lockers' lock threads to keep the priority they start with rather
	// than ask for nice -10 where the host allows it (probe's lockThreadNice). Optional: false.
	KeepPriority bool
	// NoObservers starts no observer processes. Optional: false, one observer per file (node).
	NoObservers bool
	// OutDir is where the trace file and reports go. Required.
	OutDir string
	// Executable is the lockprobe binary to start lockers with. Optional: this process's own.
	Executable string
	// Start starts one member on this host. Optional: Executable as a child process (its own
	// process group, killed by the kernel if the controller dies).
	Start func(Spec) (Process, error)
	// Listen is a TCP endpoint for lockers on other nodes. Members on this host always connect
	// over a Unix socket in a folder only this user can open; without remote lockers there is no
	// TCP port at all. Optional: none, or tcp://127.0.0.1:0 (loopback, any free port) when
	// Remote > 0.
	Listen string
	// Listener binds the controller's socket. Optional: wire.Listen.
	Listener func(context.Context, wire.ListenOptions) (*wire.Conn, error)
	// Launch, when set, starts every member on the nodes of a cluster (Slurm's srun, ssh) instead
	// of this host: the controller calls it once it listens on Listen (TCP, required then), with
	// one Spec per member, and the Group's end is theirs. Locker i runs on Nodes[NodeOf[i]],
	// one observer on each node; Files[0] is the file's path on every node. Optional.
	Launch func(ctx context.Context, specs []Spec) (Group, error)
	Nodes  []string
	NodeOf []int
	// SilentAfter is how long a node may say nothing before it is named silent (its members
	// ping every 2 s). Optional: 3s.
	SilentAfter time.Duration
	// Launcher and Delivery say, for the report, which launcher started the members and how the
	// binary reached the nodes. Optional.
	Launcher string
	Delivery string
	// Remote is how many of the lockers (the last ones) run on other nodes: the controller does
	// not start them; they connect with `lockprobe locker -connect ... -id K` and the token.
	// Optional: 0.
	Remote int
	// Token is the secret lockers must present. Optional: a random one (remote lockers need it
	// told: see Announce).
	Token string
	// Announce, when set and Remote > 0, is called once the controller listens, with the TCP
	// endpoint and the token, so that remote lockers can be told how to connect.
	Announce func(endpoint, token string)
	// StartupTimeout bounds the time until every locker is ready. Optional: 10s + 10ms per locker.
	StartupTimeout time.Duration
	// Grace is how long stopping lockers may take before they are killed. Optional: 3s.
	Grace time.Duration
	// CommandLine, ScenarioName and ScenarioText are recorded on the root span for the report.
	CommandLine  string
	ScenarioName string
	ScenarioText string
	Version      string
	// Watch, when set, is called with every merged span as it arrives (online analysis), and
	// Hang is asked at each poll whether the run should end now; it returns a reason or "".
	Watch func(s *tracefile.Span)
	Hang  func(now int64) string
	// Forward, when set, receives every span batch as it arrives (OTLP export). It must not block.
	Forward func(rss []*tracepb.ResourceSpans)
	// GlusterSocket is glusterd's CLI socket, for the brick statedump taken at the end of a run
	// on GlusterFS. Optional: the gluster command's default.
	GlusterSocket string
	// Progress, when set, is called twice a second with the live status (for a terminal's
	// status line), and once with a zero Status when the run ends.
	Progress func(Status)
	Log      *slog.Logger
}

// DefaultTimeout is Options.Timeout when zero.
const DefaultTimeout = 30 * time.Second

func (o *Options) defaults() error {
	if len(o.Files) == 0 {
		return errors.New("no file to lock")
	}
	if len(o.Queues) == 0 {
		return errors.New("no lockers")
	}
	if o.Remote < 0 || o.Remote > len(o.Queues) {
		return fmt.Errorf("%d remote lockers out of %d", o.Remote, len(o.Queues))
	}
	if o.Launch != nil {
		switch {
		case len(o.Nodes) == 0:
			return errors.New("a launcher needs nodes")
		case len(o.NodeOf) != len(o.Queues):
			return fmt.Errorf("nodes of %d lockers for %d", len(o.NodeOf), len(o.Queues))
		case o.Listen == "":
			return errors.New("a launcher needs a TCP endpoint the nodes reach (Listen)")
		case o.Remote != 0:
			return errors.New("a launcher starts every locker: no -remote beside it")
		}
		for _, k := range o.NodeOf {
			if k < 0 || k >= len(o.Nodes) {
				return fmt.Errorf("locker on node %d of %d", k, len(o.Nodes))
			}
		}
	}
	if o.OutDir == "" {
		return errors.New("no output folder")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Poll <= 0 {
		o.Poll = lockmodel.DefaultPoll
	}
	if o.Kind == semconv.KindUnset {
		o.Kind = lockmodel.DefaultKind
	}
	if o.Style == semconv.StyleUnset {
		o.Style = lockmodel.DefaultStyle
	}
	if o.Tries <= 0 {
		o.Tries = lockmodel.DefaultTries
	}
	if o.Interval <= 0 {
		o.Interval = lockmodel.DefaultInterval
	}
	if o.Listen == "" && o.Remote > 0 {
		o.Listen = "tcp://127.0.0.1:0"
	}
	if o.Listener == nil {
		o.Listener = wire.Listen
	}
	if o.Start == nil {
		exe := o.Executable
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return fmt.Errorf("find own executable: %w", err)
			}
		}
		o.Start = startChild(exe)
	}
	if o.StartupTimeout <= 0 {
		o.StartupTimeout = 10*time.Second + time.Duration(len(o.Queues))*10*time.Millisecond
	}
	if o.Grace <= 0 {
		o.Grace = 3 * time.Second
	}
	if o.SilentAfter <= 0 {
		o.SilentAfter = defaultSilentAfter
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for i, q := range o.Queues {
		for j := range q {
			if err := q[j].Validate(); err != nil {
				return fmt.Errorf("locker %d command %d: %w", i, j, err)
			}
		}
	}
	return nil
}
