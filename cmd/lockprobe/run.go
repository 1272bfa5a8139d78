//go:build !lockeronly

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/launch"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/reports"
	"github.com/lockprobe/lockprobe/scenario"
	"github.com/lockprobe/lockprobe/semconv"
)

// maxProcs bounds -procs: every locker is a process on this node.
const maxProcs = 10000

type runFlags struct {
	files        stringList
	procs        string
	timeout      time.Duration
	timeoutSet   bool // -timeout was given (0 is then an error, not "the default")
	scenario     string
	lock         semconv.Kind
	style        semconv.Style
	tries        int
	interval     time.Duration
	poll         time.Duration
	out          string
	observers    bool
	onHang       string
	stuckAfter   time.Duration
	otlp         string
	verbose      bool
	glusterSock  string
	remote       int
	keepPriority bool
	listen       string
	token        string
	startup      time.Duration
	cluster      clusterFlags
	// sc and nprocs are the scenario and the number of lockers options found, for a launcher's
	// queues, which wait for the nodes.
	sc     *scenario.Scenario
	nprocs int
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Var(&f.files, "file", "the file to lock (repeat it for the same file seen through other mounts or clients)")
	fs.StringVar(&f.procs, "procs", "", "number of lockers (default: the scenario's procs, else 10)")
	fs.DurationVar(&f.timeout, "timeout", 0, fmt.Sprintf("end the run after this long (default: the scenario's, else %s)", control.DefaultTimeout))
	fs.StringVar(&f.scenario, "scenario", "", "a built-in scenario name or a scenario file (default contend)")
	fs.TextVar(&f.lock, "lock", semconv.KindUnset, fmt.Sprintf("default lock kind: posix, ofd or flock (default: the scenario's, else %s)", lockmodel.DefaultKind))
	fs.TextVar(&f.style, "style", semconv.StyleUnset, fmt.Sprintf("default acquire style: wait, try or poll (default: the scenario's, else %s)", lockmodel.DefaultStyle))
	fs.IntVar(&f.tries, "tries", 0, fmt.Sprintf("default number of tries for style poll (default: the scenario's, else %d)", lockmodel.DefaultTries))
	fs.DurationVar(&f.interval, "interval", 0, fmt.Sprintf("default interval between tries for style poll (default: the scenario's, else %s)", lockmodel.DefaultInterval))
	fs.DurationVar(&f.poll, "poll", lockmodel.DefaultPoll, "how often waiters and observers ask F_GETLK, and the online detector runs")
	fs.StringVar(&f.out, "out", "", "output folder (default: a new lockprobe-out-TIMESTAMP folder here)")
	fs.BoolVar(&f.keepPriority, "keep-priority", false, "lockers' lock threads keep the priority they start with (by default, where allowed, they run at nice -10 so that the instrument's own threads do not delay lock hand-offs)")
	fs.BoolVar(&f.observers, "observers", true, "start one observer process per file (never locks; F_GETLK witness)")
	fs.StringVar(&f.onHang, "on-hang", "stop", "when a deadlock forms: stop (snapshot and end) or wait (watch until -timeout)")
	fs.DurationVar(&f.stuckAfter, "stuck-after", analysis.DefaultStuckAfter, "a waiter blocked this long under suspicious evidence is reported stuck")
	fs.StringVar(&f.otlp, "otlp", "", "forward spans to this OTLP endpoint (http://host:4318 or grpc://host:4317); OTEL_EXPORTER_OTLP_* also work")
	fs.BoolVar(&f.verbose, "v", false, "log diagnostics to stderr")
	fs.IntVar(&f.remote, "remote", 0, "how many of the lockers (the last ones) run on other nodes and connect by themselves (lockprobe locker -connect ...)")
	fs.StringVar(&f.listen, "listen", "", "with -remote: the TCP endpoint remote lockers connect to, tcp://HOST:PORT (default tcp://127.0.0.1:0); local lockers use a private Unix socket")
	fs.StringVar(&f.token, "token", "", "the secret lockers must present (default: LOCKPROBE_TOKEN, else a random one; LOCKPROBE_TOKEN on the remote nodes too). It never appears in the trace or the reports")
	fs.DurationVar(&f.startup, "startup-timeout", 0, "how long to wait for every locker to be ready (default 10s + 10ms per locker; 5m with -remote)")
	fs.StringVar(&f.glusterSock, "gluster-sock", "", "glusterd's CLI socket, for the brick statedump at the end of a run on GlusterFS (default: gluster's own)")
	fs.TextVar(&f.cluster.launcher, "launcher", launch.Local, "how lockers start: local (here), slurm (one srun job step in the allocation) or ssh (one session each, to -hosts)")
	fs.IntVar(&f.cluster.nodes, "nodes", 0, "with -launcher: how many nodes (slurm: the first K of the allocation, or an allocation of K nodes of its own; ssh: the first K hosts)")
	fs.StringVar(&f.cluster.hosts, "hosts", "", "with -launcher ssh: the nodes, HOST,HOST,... (ssh destinations)")
	fs.TextVar(&f.cluster.spread, "spread", launch.Block, "with -launcher: lockers over the nodes in blocks (block) or round-robin (cyclic)")
	fs.StringVar(&f.cluster.sshConfig, "ssh-config", "", "with -launcher ssh: an ssh client configuration file (ssh -F)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(fl *flag.Flag) { f.timeoutSet = f.timeoutSet || fl.Name == "timeout" })
	if f.token == "" {
		// From the environment, the secret stays off the command line every user can read.
		f.token = os.Getenv("LOCKPROBE_TOKEN")
	}
	// The command line goes into the trace and the reports, which get attached to tickets: never
	// with the secret in it.
	cmdLine := "lockprobe run " + shellJoin(redactToken(args))
	opts, err := f.options(cmdLine)
	if err != nil {
		return err
	}
	logLevel := slog.LevelWarn
	if f.verbose {
		logLevel = slog.LevelDebug
	}
	opts.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	if isTerminal(stderr) {
		opts.Progress = statusLine(stderr)
	}
	if f.remote > 0 {
		opts.Announce = announceRemote(stderr, opts)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if opts.Executable, err = lockerExecutable(opts.Log); err != nil {
		return fmt.Errorf("find the locker binary: %w", err)
	}
	var cluster *clusterRun
	if f.cluster.launcher != launch.Local {
		if cluster, err = f.setUpCluster(ctx, &opts, f.sc, f.nprocs, opts.Log); err != nil {
			return err
		}
		defer cluster.close()
	}

	controllerGC()
	aopts := analysis.Options{StuckAfter: f.stuckAfter, Settle: f.poll}
	hw := &hangWatch{analyzer: analysis.New(aopts), stop: f.onHang == "stop", log: opts.Log}
	opts.Watch = hw.analyzer.Observe
	opts.Hang = hw.check
	fwd, err := newForwarder(f.otlp, opts.Log)
	if err != nil {
		return err
	}
	if fwd != nil {
		opts.Forward = fwd.Enqueue
	}

	res, runErr := control.Run(ctx, opts)
	var le *control.ListenError
	if errors.As(runErr, &le) {
		return usagef("-listen %s: %v", opts.Listen, le.Err)
	}
	if res == nil || isSetupError(runErr) {
		return startError(runErr)
	}
	code, err := report(res, hw.analyzer, hw.latency(), fwd, stdout)
	if cluster != nil {
		cluster.describe(stdout, f.cluster.launcher)
	}
	// Closed only now: the verdict that report adds to the root span goes out with it.
	if fwd != nil {
		fmt.Fprintln(stdout, fwd.Close())
	}
	if runErr != nil {
		return runErr
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// hangWatch asks the live analyzer, at each poll of the controller, whether a deadlock has
// formed, and remembers when it first saw one (for the detection latency in the report).
type hangWatch struct {
	analyzer         *analysis.Analyzer
	stop             bool // -on-hang stop: end the run at the first deadlock
	log              *slog.Logger
	hangAt, formedAt int64
}

func (h *hangWatch) check(now int64) string {
	for _, fd := range h.analyzer.Check(now) {
		if fd.Class != analysis.ClassDeadlock {
			continue
		}
		if h.hangAt == 0 {
			h.hangAt, h.formedAt = now, fd.FormedAt
			h.log.Info("deadlock detected", "lockers", fd.Lockers, "formed", time.Unix(0, fd.FormedAt))
		}
		if h.stop {
			return fmt.Sprintf("deadlock of lockers %v", fd.Lockers)
		}
	}
	return ""
}

// latency is how long after a deadlock formed the live check saw it; 0 when it saw none.
func (h *hangWatch) latency() time.Duration {
	if h.hangAt == 0 || h.formedAt == 0 {
		return 0
	}
	return time.Duration(h.hangAt - h.formedAt)
}

// report finishes the live analysis of the run (the analyzer saw every record the controller
// merged, the controller's own final records included, so the trace file is not read back),
// writes the verdict into the trace (and to the collector, when fwd is not nil) and the reports
// into the output folder, and prints the summary. It gives what `lockprobe analyze` gives on
// the same trace.
func report(res *control.Result, analyzer *analysis.Analyzer, latency time.Duration, fwd *forwarder, stdout io.Writer) (int, error) {
	ar := analyzer.Finalize(res.End.UnixNano())
	rec := control.VerdictRecord(res, version, ar.Verdict.Class, ar.Verdict.Exit, reports.Summary(ar))
	if err := control.WriteVerdict(res, rec); err != nil {
		return exitTool, err
	}
	if fwd != nil {
		fwd.Verdict(rec)
	}
	if err := writeReports(ar, reportOptions{outDir: res.OutDir, latency: latency, endReason: res.EndReason, killed: res.Killed, unresponsive: res.Unresponsive}, stdout); err != nil {
		return exitTool, err
	}
	return ar.Verdict.Exit, nil
}

// options validates the flags and the scenario into control.Options. Every problem is a usage
// error: one line, exit status 2, and no process started.
func (f *runFlags) options(cmdLine string) (control.Options, error) {
	var o control.Options
	if len(f.files) == 0 {
		return o, usagef("-file is required: the file the lockers lock")
	}
	if err := f.cluster.check(f); err != nil {
		return o, err
	}
	for i, p := range f.files {
		if f.cluster.launcher != launch.Local {
			break // a path on the nodes
		}
		abs, err := checkLockFile(p)
		if err != nil {
			return o, err
		}
		f.files[i] = abs
	}
	sc, err := loadScenario(f.scenario)
	if err != nil {
		return o, err
	}
	procs := sc.Header.Procs.Or(10)
	if f.procs != "" {
		n, err := parsePositive(f.procs)
		if err != nil {
			return o, usagef("-procs %q: %v", f.procs, err)
		}
		procs = n
	}
	if procs > maxProcs {
		return o, usagef("-procs %d: at most %d lockers", procs, maxProcs)
	}
	if f.onHang != "stop" && f.onHang != "wait" {
		return o, usagef("-on-hang %q: unknown value", f.onHang)
	}
	if f.remote < 0 || f.remote > procs {
		return o, usagef("-remote %d: must be between 0 and -procs (%d)", f.remote, procs)
	}
	if f.listen != "" {
		if f.remote == 0 && f.cluster.launcher == launch.Local {
			return o, usagef("-listen is for -remote lockers: local lockers connect over a private Unix socket")
		}
		hp, ok := strings.CutPrefix(f.listen, "tcp://")
		if _, _, err := net.SplitHostPort(hp); !ok || err != nil {
			return o, usagef("-listen %q: want tcp://HOST:PORT", f.listen)
		}
	}
	if f.startup == 0 && f.remote > 0 {
		f.startup = 5 * time.Minute
	}
	if f.tries < 0 || f.interval < 0 || f.poll <= 0 || f.timeout < 0 || f.stuckAfter <= 0 || f.startup < 0 {
		return o, usagef("-tries, -interval, -timeout must not be negative; -poll and -stuck-after must be positive")
	}
	if f.timeoutSet && f.timeout == 0 {
		return o, usagef("-timeout 0: must be more than zero (leave it out for the scenario's, else %s)", control.DefaultTimeout)
	}
	var queues [][]proto.Command
	if f.cluster.launcher == launch.Local {
		queues, err = sc.Queues(procs, f.files)
	} else {
		// Checked now for what does not depend on the nodes (which are not known yet): any
		// node=K is accepted here, and checked again once they are.
		_, err = sc.QueuesOn(procs, f.files, scenario.Placement{Nodes: scenario.MaxProcs})
	}
	if err != nil {
		return o, usagef("%v", err)
	}
	if err := checkQueueFiles(queues, f.files); err != nil {
		return o, err
	}
	f.sc, f.nprocs = sc, procs
	out := f.out
	if out == "" {
		out = defaultOutDir()
	} else if err := checkOutDir(out); err != nil {
		return o, err
	}
	o = control.Options{
		Files:          f.files,
		Queues:         queues,
		Timeout:        pick(f.timeout, sc.Header.Timeout.Value),
		Kind:           pick(f.lock, sc.Header.Kind.Value),
		Style:          pick(f.style, sc.Header.Style.Value),
		Tries:          pick(f.tries, sc.Header.Tries.Value),
		Interval:       pick(f.interval, sc.Header.Interval.Value),
		Poll:           f.poll,
		NoObservers:    !f.observers,
		KeepPriority:   f.keepPriority,
		OutDir:         out,
		CommandLine:    cmdLine,
		ScenarioName:   sc.Name,
		ScenarioText:   sc.Text,
		Version:        version,
		GlusterSocket:  f.glusterSock,
		Remote:         f.remote,
		Listen:         f.listen,
		Token:          f.token,
		StartupTimeout: f.startup,
	}
	return o, nil
}

// pick returns the flag's value when it was given (not zero), else def.
func pick[T comparable](flagVal, def T) T {
	var zero T
	if flagVal != zero {
		return flagVal
	}
	return def
}

func parsePositive(s string) (int, error) {
	n := 0
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a positive whole number")
		}
		n = n*10 + int(c-'0')
		if n > 1<<30 {
			return 0, errors.New("too large")
		}
	}
	if n == 0 {
		return 0, errors.New("must be at least 1")
	}
	return n, nil
}

func defaultOutDir() string {
	base := "lockprobe-out-" + time.Now().Format("20060102-150405")
	out := base
	for i := 1; ; i++ {
		if _, err := os.Stat(out); errors.Is(err, os.ErrNotExist) {
			return out
		}
		out = fmt.Sprintf("%s-%d", base, i)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// redactToken replaces the value of -token in args.
func redactToken(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if name == a {
			continue
		}
		switch {
		case name == "token" && i+1 < len(out):
			out[i+1] = "REDACTED"
			i++
		case strings.HasPrefix(name, "token="):
			out[i] = a[:len(a)-len(name)] + "token=REDACTED"
		}
	}
	return out
}

// shellJoin renders args as a shell would need them, for the report's "Reproduce".
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// announceRemote tells the user how to start the remote lockers once the controller listens.
func announceRemote(w io.Writer, opts control.Options) func(endpoint, token string) {
	return func(endpoint, token string) {
		n := len(opts.Queues)
		fmt.Fprintf(w, "waiting for %d remote lockers (ids %d-%d); on each remote node run:\n", opts.Remote, n-opts.Remote, n-1)
		fmt.Fprintf(w, "  LOCKPROBE_TOKEN=%s lockprobe locker -connect %s -id ID -allow %s\n", token, endpoint, opts.Files[0])
	}
}
