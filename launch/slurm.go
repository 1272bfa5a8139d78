package launch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// SlurmOptions configure the Slurm launcher.
type SlurmOptions struct {
	// JobID is the allocation lockprobe runs in (SLURM_JOB_ID). Optional: without it the
	// launcher makes an allocation of its own of Nodes nodes (salloc --no-shell) and cancels it
	// at Close.
	JobID string
	// NodeList is that allocation's node list in Slurm's compressed form (SLURM_JOB_NODELIST).
	// Optional: asked from squeue.
	NodeList string
	// Nodes is how many nodes to use: the first Nodes of the allocation, or the size of the
	// allocation to make. Required without JobID; optional with it (all its nodes).
	Nodes int
	// Name names the allocation and the job step, for squeue and scancel. Required: unique per
	// run.
	Name string
	// Env is the environment Slurm's commands run with (SLURM_CONF, the allocation's SLURM_*).
	// Optional: none.
	Env []string
	// RunDir is a folder only the user can read, for the task layout file. Required.
	RunDir string
	Log    *slog.Logger
}

// slurmTools are the commands the launcher runs; salloc only without an allocation.
var slurmTools = []string{"srun", "sbcast", "scancel", "squeue", "scontrol", "sinfo"}

type slurm struct {
	opts  SlurmOptions
	log   *slog.Logger
	jobID string
	own   bool // the allocation is ours: cancelled at Close
	nodes []Node
	deliv Delivery
}

// NewSlurm checks that Slurm's commands are here and that there is an allocation to run in, or
// a node count to ask for one.
func NewSlurm(opts SlurmOptions) (Launcher, error) {
	tools := slurmTools
	if opts.JobID == "" {
		if opts.Nodes <= 0 {
			return nil, &SetupError{Msg: "no Slurm allocation (SLURM_JOB_ID is not set) and no -nodes: run inside salloc or sbatch, or give -nodes K"}
		}
		tools = append(tools, "salloc")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return nil, &SetupError{Msg: fmt.Sprintf("%s not found on PATH: -launcher slurm needs Slurm's commands", t)}
		}
	}
	if opts.Name == "" || opts.RunDir == "" {
		return nil, fmt.Errorf("slurm launcher: no name or run folder")
	}
	return &slurm{opts: opts, log: logger(opts.Log), jobID: opts.JobID}, nil
}

func (s *slurm) Kind() Kind { return Slurm }

// Nodes returns the allocation's nodes (the first -nodes of them) with their NodeAddr; without
// an allocation it makes one.
func (s *slurm) Nodes(ctx context.Context) ([]Node, error) {
	if s.nodes != nil {
		return s.nodes, nil
	}
	list := s.opts.NodeList
	if s.jobID == "" {
		id, err := s.allocate(ctx)
		if err != nil {
			return nil, err
		}
		s.jobID, s.own = id, true
		list = ""
	}
	if list == "" {
		out, err := runTool(ctx, s.opts.Env, "squeue", "-h", "-j", s.jobID, "-o", "%N")
		if err != nil {
			return nil, &SetupError{Msg: fmt.Sprintf("Slurm job %s: %v", s.jobID, err)}
		}
		list = strings.TrimSpace(out)
	}
	out, err := runTool(ctx, s.opts.Env, "scontrol", "show", "hostnames", list)
	if err != nil {
		return nil, fmt.Errorf("expanding node list %q: %w", list, err)
	}
	names := strings.Fields(out)
	if s.opts.Nodes > 0 {
		if len(names) < s.opts.Nodes {
			return nil, &SetupError{Msg: fmt.Sprintf("-nodes %d: the allocation (job %s) has %d nodes", s.opts.Nodes, s.jobID, len(names))}
		}
		names = names[:s.opts.Nodes]
	}
	if len(names) == 0 {
		return nil, &SetupError{Msg: fmt.Sprintf("Slurm job %s has no nodes", s.jobID)}
	}
	out, err = runTool(ctx, s.opts.Env, "sinfo", "-h", "-N", "-n", strings.Join(names, ","), "-o", "%N %o")
	if err != nil {
		return nil, fmt.Errorf("node addresses: %w", err)
	}
	addrs := parseNodeAddrs(out)
	for _, n := range names {
		s.nodes = append(s.nodes, Node{Name: n, Addr: addrs[n]})
	}
	return s.nodes, nil
}

// parseNodeAddrs reads `sinfo -N -o "%N %o"` lines: node name, NodeAddr (a node in several
// partitions is listed once per partition).
func parseNodeAddrs(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

var grantedRE = regexp.MustCompile(`Granted job allocation (\d+)`)

// allocate asks for an allocation of Nodes nodes and returns its job id once granted.
func (s *slurm) allocate(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "salloc", "--no-shell", "-N", strconv.Itoa(s.opts.Nodes), "-J", s.opts.Name)
	cmd.Env = s.opts.Env
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	m := grantedRE.FindSubmatch(out)
	if err != nil || m == nil {
		return "", &SetupError{Msg: fmt.Sprintf("salloc -N %d: %v: %s", s.opts.Nodes, err, lastLine(string(out)))}
	}
	s.log.Info("slurm allocation", "job", string(m[1]), "nodes", s.opts.Nodes)
	return string(m[1]), nil
}

// Deliver checks that binary is the same file on every node (each node's copy prints its own
// SHA-256); else it copies it with sbcast to the nodes' /tmp.
func (s *slurm) Deliver(ctx context.Context, binary string) (Delivery, error) {
	sum, err := Sum(binary)
	if err != nil {
		return Delivery{}, fmt.Errorf("binary: %w", err)
	}
	nodes, err := s.Nodes(ctx)
	if err != nil {
		return Delivery{}, err
	}
	differs, err := s.sumsDiffer(ctx, binary, sum)
	if err != nil {
		return Delivery{}, err
	}
	if differs == "" {
		s.deliv = Delivery{Path: binary, How: "shared path " + binary}
		return s.deliv, nil
	}
	dest := "/tmp/lockprobe-" + sum[:16]
	if _, err := runTool(ctx, s.opts.Env, "sbcast", "--jobid="+s.jobID, "-f", "-p", binary, dest); err != nil {
		return Delivery{}, fmt.Errorf("copying the binary to the nodes: %w", err)
	}
	s.deliv = Delivery{Path: dest, Copied: true,
		How: fmt.Sprintf("copied with sbcast to %s on %d nodes (%s: %s)", dest, len(nodes), binary, differs)}
	return s.deliv, nil
}

// sumsDiffer runs `binary version -sum` once per node and says on which node (and how) the file
// at that path is not ours, or "" when it is ours everywhere.
func (s *slurm) sumsDiffer(ctx context.Context, binary, sum string) (string, error) {
	members := make([]Member, len(s.nodes))
	for i := range members {
		members[i] = Member{Node: i}
	}
	layout, err := s.writeLayout("check", members)
	if err != nil {
		return "", err
	}
	args := s.stepArgs(s.opts.Name+"-check", len(members), false)
	args = append(args, "--", binary, "version", "-sum")
	out, _ := runTool(ctx, append(s.env(), "SLURM_HOSTFILE="+layout), "srun", args...)
	got := map[int]string{}
	for _, l := range strings.Split(out, "\n") {
		if rank, text, ok := parseLabel(l); ok && strings.HasPrefix(text, "sha256:") {
			got[rank] = text
		}
	}
	for i, n := range s.nodes {
		switch g := got[i]; {
		case g == "":
			return "not there, or it did not run, on " + n.Name, nil
		case g != SumLine(sum):
			return "another build on " + n.Name, nil
		}
	}
	return "", nil
}

// env is the environment of srun: the user's, without a layout file of their own.
func (s *slurm) env() []string {
	var env []string
	for _, kv := range s.opts.Env {
		if !strings.HasPrefix(kv, "SLURM_HOSTFILE=") && !strings.HasPrefix(kv, "LOCKPROBE_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// writeLayout writes the task layout srun's arbitrary distribution reads (SLURM_HOSTFILE):
// one node name per task, in rank order.
func (s *slurm) writeLayout(name string, members []Member) (string, error) {
	var b strings.Builder
	for _, m := range members {
		b.WriteString(s.nodes[m.Node].Name + "\n")
	}
	p := filepath.Join(s.opts.RunDir, "slurm-"+name+".hosts")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("task layout: %w", err)
	}
	return p, nil
}

// stepArgs are srun's options for a step of tasks tasks laid out by SLURM_HOSTFILE:
//   - --jobid: in our allocation, whatever the environment says;
//   - -m arbitrary: task i on line i of the layout, so a rank is a locker id on a known node;
//   - -O: more tasks than CPUs (lockers mostly wait), --overlap: beside the user's own steps;
//   - -l: task rank before each output line, which names the node of a failure;
//   - --chdir=/: the caller's folder may not exist on the nodes;
//   - --export: only the token (taken from srun's environment, never from its command line)
//     and Slurm's own variables reach the members; only PATH the other steps.
//   - -K1 (members only): one member that exits badly ends the step, and so the start.
func (s *slurm) stepArgs(name string, tasks int, members bool) []string {
	args := []string{"--jobid=" + s.jobID, "--job-name=" + name, "-n", strconv.Itoa(tasks),
		"-m", "arbitrary", "-O", "--overlap", "-l", "--chdir=/", "--input=none"}
	if members {
		args = append(args, "-K1", "--export=LOCKPROBE_TOKEN")
	} else {
		args = append(args, "--export=PATH")
	}
	return args
}

// Start runs every member as one task of one job step. Ranks are locker ids; the observers come
// after the lockers, one per node.
func (s *slurm) Start(ctx context.Context, p Plan) (Job, error) {
	if s.deliv.Path == "" {
		return nil, fmt.Errorf("slurm launcher: Start before Deliver")
	}
	layout, err := s.writeLayout("step", p.Members)
	if err != nil {
		return nil, err
	}
	args := s.stepArgs(s.opts.Name, len(p.Members), true)
	args = append(args, "--", s.deliv.Path)
	args = append(args, lockerArgs(p)...)
	args = append(args, "-slurm-lockers", strconv.Itoa(p.lockers()))
	cmd := exec.Command("srun", args...)
	cmd.Env = append(s.env(), "SLURM_HOSTFILE="+layout, "LOCKPROBE_TOKEN="+p.Token)
	cmd.Dir = "/"
	j := &slurmJob{s: s, members: p.Members, last: map[int]string{}}
	pr, err := startProc(cmd, j.line)
	if err != nil {
		return nil, fmt.Errorf("starting srun: %w", err)
	}
	j.p = pr
	s.log.Info("srun started", "pid", cmd.Process.Pid, "tasks", len(p.Members), "nodes", len(s.nodes), "args", strings.Join(args, " "))
	return j, nil
}

// Close removes a copied binary from the nodes and cancels an allocation of our own.
func (s *slurm) Close(ctx context.Context) error {
	var err error
	if s.deliv.Copied && s.jobID != "" {
		members := make([]Member, len(s.nodes))
		for i := range members {
			members[i] = Member{Node: i}
		}
		if layout, lerr := s.writeLayout("clean", members); lerr == nil {
			args := append(s.stepArgs(s.opts.Name+"-clean", len(members), false), "--", "rm", "-f", s.deliv.Path)
			cctx, cancel := context.WithTimeout(ctx, cleanTimeout)
			if _, rerr := runTool(cctx, append(s.env(), "SLURM_HOSTFILE="+layout), "srun", args...); rerr != nil {
				s.log.Warn("removing the copied binary from the nodes", "err", rerr)
			}
			cancel()
		}
	}
	if s.own {
		if _, cerr := runTool(ctx, s.opts.Env, "scancel", s.jobID); cerr != nil {
			err = fmt.Errorf("cancelling allocation %s: %w", s.jobID, cerr)
		}
		s.own = false
	}
	return err
}

// slurmJob is the running step.
type slurmJob struct {
	s       *slurm
	p       *proc
	members []Member
	mu      sync.Mutex
	last    map[int]string // the last line each task wrote
	failed  []taskFailure
}

type taskFailure struct {
	node string
	rank int
	code int
}

// taskErrRE reads srun's report of tasks that exited badly: "srun: error: NODE: task 3: Exited
// with exit code 2", "tasks 1,4: ...", "tasks 0-1: ..."; the first task named is taken.
var taskErrRE = regexp.MustCompile(`^srun: error: (\S+): tasks? (\d+)[\d,-]*: Exited with exit code (\d+)`)

// line records srun's and the tasks' output (labelled with the task's rank).
func (j *slurmJob) line(l string) {
	j.s.log.Debug("srun", "line", l)
	j.mu.Lock()
	defer j.mu.Unlock()
	if m := taskErrRE.FindStringSubmatch(l); m != nil {
		rank, _ := strconv.Atoi(m[2])
		code, _ := strconv.Atoi(m[3])
		j.failed = append(j.failed, taskFailure{node: m[1], rank: rank, code: code})
		return
	}
	if rank, text, ok := parseLabel(l); ok {
		j.last[rank] = text
	}
}

// parseLabel splits srun's --label prefix ("  3: text") from a line.
func parseLabel(l string) (rank int, text string, ok bool) {
	num, text, found := strings.Cut(strings.TrimLeft(l, " "), ": ")
	if !found {
		return 0, "", false
	}
	rank, err := strconv.Atoi(num)
	if err != nil || rank < 0 {
		return 0, "", false
	}
	return rank, text, true
}

func (j *slurmJob) Exited() <-chan struct{} { return j.p.exited }

// Err names the first task that exited badly, with the last line it wrote: the reason. A
// locker's usage error (exit status 2: its file is missing, ...) is a SetupError.
func (j *slurmJob) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.failed) > 0 {
		f := j.failed[0]
		what := fmt.Sprintf("task %d", f.rank)
		if f.rank < len(j.members) {
			what = memberName(j.members[f.rank], j.s.nodes)
		}
		msg := strings.TrimPrefix(j.last[f.rank], "lockprobe locker: ")
		if msg == "" {
			msg = fmt.Sprintf("exited with status %d", f.code)
		}
		if f.code == 2 {
			return &SetupError{Node: f.node, Member: what, Msg: msg}
		}
		return fmt.Errorf("node %s: %s: %s", f.node, what, msg)
	}
	if code := j.p.exitCode(); code != 0 {
		return fmt.Errorf("srun exited with status %d", code)
	}
	return nil
}

// Stop cancels the step (scancel JOB.STEP, found by its name) and waits for srun, killing it
// when ctx ends.
func (j *slurmJob) Stop(ctx context.Context) error {
	select {
	case <-j.p.exited:
		return nil
	default:
	}
	s := j.s
	out, err := runTool(ctx, s.opts.Env, "squeue", "-h", "-s", "-j", s.jobID, "--name="+s.opts.Name, "-o", "%i")
	if err != nil {
		s.log.Warn("finding the job step", "err", err)
	}
	for _, step := range strings.Fields(out) {
		if _, err := runTool(ctx, s.opts.Env, "scancel", step); err != nil {
			s.log.Warn("scancel", "step", step, "err", err)
		} else {
			s.log.Info("job step cancelled", "step", step)
		}
	}
	return j.p.waitOrKill(ctx)
}
