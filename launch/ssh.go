package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SSHOptions configure the ssh launcher.
type SSHOptions struct {
	// Hosts are the nodes as ssh destinations ([user@]host). Required.
	Hosts []string
	// Config is an ssh client configuration file (ssh -F). Optional: ssh's own.
	Config string
	// Env is the environment ssh and scp run with. Optional: none.
	Env []string
	Log *slog.Logger
}

// hostRE is what a -hosts entry may be: a name or an address, with an optional user. Nothing
// that ssh could read as an option or a shell as syntax.
var hostRE = regexp.MustCompile(`^(?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])$`)

type sshLauncher struct {
	opts  SSHOptions
	log   *slog.Logger
	nodes []Node
	deliv Delivery
}

// NewSSH checks the host list and that ssh and scp are here.
func NewSSH(opts SSHOptions) (Launcher, error) {
	if len(opts.Hosts) == 0 {
		return nil, &SetupError{Msg: "-launcher ssh needs -hosts"}
	}
	seen := map[string]bool{}
	for _, h := range opts.Hosts {
		if !hostRE.MatchString(h) || strings.HasPrefix(h, "-") {
			return nil, &SetupError{Msg: fmt.Sprintf("-hosts: %q is not a host name or address", h)}
		}
		if seen[h] {
			return nil, &SetupError{Msg: fmt.Sprintf("-hosts: %s given twice", h)}
		}
		seen[h] = true
	}
	for _, t := range []string{"ssh", "scp"} {
		if _, err := exec.LookPath(t); err != nil {
			return nil, &SetupError{Msg: t + " not found on PATH: -launcher ssh needs OpenSSH's client"}
		}
	}
	return &sshLauncher{opts: opts, log: logger(opts.Log)}, nil
}

func (l *sshLauncher) Kind() Kind { return SSH }

// baseArgs are the options of every ssh and scp: the configuration file, and batch mode, so
// that nothing ever waits for a password or a host key answer.
func (l *sshLauncher) baseArgs() []string {
	var args []string
	if l.opts.Config != "" {
		args = append(args, "-F", l.opts.Config)
	}
	return append(args, "-o", "BatchMode=yes")
}

// sshArgs is the command line of `ssh host argv...`. ssh joins the words of a remote command
// with spaces and hands the result to the remote user's shell, so each word is quoted for it:
// the shell sees the words as given, whatever they hold. -T: no terminal; -- ends ssh's
// options.
func (l *sshLauncher) sshArgs(host string, argv ...string) []string {
	args := append(l.baseArgs(), "-T", "--", host)
	for _, a := range argv {
		args = append(args, shellQuote(a))
	}
	return args
}

// shellQuote quotes s for a POSIX shell: in single quotes, each quote inside closed, escaped
// and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Nodes resolves each host's address as ssh would (ssh -G: its configuration applied).
func (l *sshLauncher) Nodes(ctx context.Context) ([]Node, error) {
	if l.nodes != nil {
		return l.nodes, nil
	}
	for _, h := range l.opts.Hosts {
		out, err := runTool(ctx, l.opts.Env, "ssh", append(l.baseArgs(), "-G", "--", h)...)
		if err != nil {
			return nil, setupf(h, "ssh -G: %v", err)
		}
		addr := sshHostName(out)
		if ips, err := net.DefaultResolver.LookupHost(ctx, addr); err == nil && len(ips) > 0 {
			addr = ips[0]
		}
		l.nodes = append(l.nodes, Node{Name: h, Addr: addr})
	}
	return l.nodes, nil
}

// sshHostName reads the "hostname" line of `ssh -G`.
func sshHostName(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok && k == "hostname" {
			return v
		}
	}
	return ""
}

// each runs f for every node at once and returns the first error in node order.
func (l *sshLauncher) each(f func(i int, n Node) error) error {
	errs := make([]error, len(l.nodes))
	var wg sync.WaitGroup
	for i, n := range l.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i, n) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Deliver checks that binary is the same file on every host; else it copies it with scp to
// every host's /tmp. A host that refuses ssh fails here, before anything starts.
func (l *sshLauncher) Deliver(ctx context.Context, binary string) (Delivery, error) {
	sum, err := Sum(binary)
	if err != nil {
		return Delivery{}, fmt.Errorf("binary: %w", err)
	}
	if _, err := l.Nodes(ctx); err != nil {
		return Delivery{}, err
	}
	differs := make([]string, len(l.nodes))
	err = l.each(func(i int, n Node) error {
		cmd := exec.CommandContext(ctx, "ssh", l.sshArgs(n.Name, binary, "version", "-sum")...)
		cmd.Env = l.opts.Env
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := runWithTimeout(cmd)
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.ExitCode() == 255:
			return setupf(n.Name, "ssh: %s", lastLine(stderr.String()))
		case err != nil && !errors.As(err, &ee):
			return setupf(n.Name, "ssh: %v", err)
		case err != nil:
			differs[i] = "not there, or it did not run, on " + n.Name
		case lastLine(stdout.String()) != SumLine(sum):
			differs[i] = "another build on " + n.Name
		}
		return nil
	})
	if err != nil {
		return Delivery{}, err
	}
	why := ""
	for _, d := range differs {
		if d != "" {
			why = d // the first node's reason, as the Slurm launcher says it
			break
		}
	}
	if why == "" {
		l.deliv = Delivery{Path: binary, How: "shared path " + binary}
		return l.deliv, nil
	}
	dest := "/tmp/lockprobe-" + sum[:16]
	err = l.each(func(i int, n Node) error {
		// scp speaks SFTP (OpenSSH 9): the remote path is not read by a shell.
		args := append(l.baseArgs(), "-q", "-p", "--", binary, scpTarget(n.Name, dest))
		if _, err := runTool(ctx, l.opts.Env, "scp", args...); err != nil {
			return setupf(n.Name, "copying the binary: %v", err)
		}
		return nil
	})
	if err != nil {
		return Delivery{}, err
	}
	l.deliv = Delivery{Path: dest, Copied: true,
		How: fmt.Sprintf("copied with scp to %s on %d hosts (%s: %s)", dest, len(l.nodes), binary, why)}
	return l.deliv, nil
}

// scpTarget is host:path for scp; an IPv6 address is already in brackets (hostRE).
func scpTarget(host, path string) string { return host + ":" + path }

// runWithTimeout runs cmd, killing it after commandTimeout.
func runWithTimeout(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(commandTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not answer within %s", cmd.Path, commandTimeout)
	}
}

// Start opens one ssh session per member. The token goes down the session's standard input;
// the remote locker reads it and then watches its input, whose end means the session is gone.
func (l *sshLauncher) Start(ctx context.Context, p Plan) (Job, error) {
	if l.deliv.Path == "" {
		return nil, fmt.Errorf("ssh launcher: Start before Deliver")
	}
	j := &sshJob{l: l, exited: make(chan struct{})}
	for _, m := range p.Members {
		argv := append([]string{l.deliv.Path}, lockerArgs(p)...)
		argv = append(argv, "-id", strconv.Itoa(m.ID), "-token-stdin")
		if m.Observer {
			argv = append(argv, "-role", "observer")
		}
		host := l.nodes[m.Node].Name
		cmd := exec.Command("ssh", l.sshArgs(host, argv...)...)
		cmd.Env = l.opts.Env
		stdin, err := cmd.StdinPipe()
		if err != nil {
			j.stopAll()
			return nil, err
		}
		s := &session{member: m, host: host, stdin: stdin}
		s.p, err = startProc(cmd, s.line(l.log))
		if err != nil {
			j.stopAll()
			return nil, fmt.Errorf("starting ssh to %s: %w", host, err)
		}
		if _, err := io.WriteString(stdin, p.Token+"\n"); err != nil {
			l.log.Warn("token to ssh session", "host", host, "err", err)
		}
		j.sessions = append(j.sessions, s)
	}
	go j.watch()
	return j, nil
}

// Close removes a copied binary from the hosts.
func (l *sshLauncher) Close(ctx context.Context) error {
	if !l.deliv.Copied {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, cleanTimeout)
	defer cancel()
	_ = l.each(func(i int, n Node) error {
		cmd := exec.CommandContext(cctx, "ssh", l.sshArgs(n.Name, "rm", "-f", "--", l.deliv.Path)...)
		cmd.Env = l.opts.Env
		if out, err := cmd.CombinedOutput(); err != nil {
			l.log.Warn("removing the copied binary", "host", n.Name, "err", err, "out", lastLine(string(out)))
		}
		return nil
	})
	return nil
}

// session is one member's ssh process.
type session struct {
	member Member
	host   string
	stdin  io.WriteCloser
	p      *proc
	mu     sync.Mutex
	last   string
}

func (s *session) line(log *slog.Logger) func(string) {
	return func(l string) {
		log.Debug("ssh", "host", s.host, "member", s.member.ID, "line", l)
		s.mu.Lock()
		s.last = l
		s.mu.Unlock()
	}
}

type sshJob struct {
	l        *sshLauncher
	sessions []*session
	exited   chan struct{}
	once     sync.Once
}

func (j *sshJob) watch() {
	for _, s := range j.sessions {
		<-s.p.exited
	}
	close(j.exited)
}

func (j *sshJob) Exited() <-chan struct{} { return j.exited }

// Err names the first session that ended badly, with its last line: 255 is ssh's own failure
// (the host refused), 2 the locker's usage error (its file is missing); both are SetupErrors.
func (j *sshJob) Err() error {
	for _, s := range j.sessions {
		select {
		case <-s.p.exited:
		default:
			continue
		}
		code := s.p.exitCode()
		if code == 0 {
			continue
		}
		s.mu.Lock()
		msg := strings.TrimPrefix(s.last, "lockprobe locker: ")
		s.mu.Unlock()
		if msg == "" {
			msg = fmt.Sprintf("ssh exited with status %d", code)
		}
		what := memberName(s.member, j.l.nodes)
		if code == 2 || code == 255 {
			return &SetupError{Node: s.host, Member: what, Msg: msg}
		}
		return fmt.Errorf("node %s: %s: %s", s.host, what, msg)
	}
	return nil
}

// Stop closes every session's input (its locker leaves) and waits; sessions still there when
// ctx ends are killed.
func (j *sshJob) Stop(ctx context.Context) error {
	j.stopInputs()
	var errs []error
	for _, s := range j.sessions {
		errs = append(errs, s.p.waitOrKill(ctx))
	}
	return errors.Join(errs...)
}

func (j *sshJob) stopInputs() {
	j.once.Do(func() {
		for _, s := range j.sessions {
			s.stdin.Close()
		}
	})
}

// stopAll kills the sessions started so far (a start that failed half way).
func (j *sshJob) stopAll() {
	j.stopInputs()
	for _, s := range j.sessions {
		s.p.kill()
	}
}
