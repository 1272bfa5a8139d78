package control

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockprobe/lockprobe/proto"
)

// Spec is what one member process is started with.
type Spec struct {
	ID             int    // locker id; observers are -1-k
	Role           string // locker | observer
	Node           string // the node it stands for
	File           string // the one file it may open (and files named by a suffix to it)
	Endpoint       string // the controller's endpoint for it
	Token          string // the run's secret; never on a command line
	StartupTimeout time.Duration
	// Log receives its standard output and error.
	Log io.Writer
}

// Args is the member's command line after the executable: `locker -connect ...`. The token is
// not in it: every user of the node can read a command line.
func (s Spec) Args() []string {
	return []string{"locker", "-connect", s.Endpoint, "-id", strconv.Itoa(s.ID), "-role", s.Role, "-node", s.Node,
		"-allow", s.File, "-startup-timeout", s.StartupTimeout.String()}
}

// Env is what the member needs in its environment beyond the controller's own, environ. A
// member started on this host starts its Go runtime with one P (GOMAXPROCS=1) and takes the
// runtime's default once its queue has come (probe's serve, told by proto.EnvStartGOMAXPROCS):
// a thousand members starting on two cores spent about a fifth of their CPU in the scheduler
// and its spinning threads (findRunnable, wakep, new Ms), and 1000 lockers were ready in ~2.7 s
// instead of ~3.5–5.6 s. A GOMAXPROCS set in environ is the user's: the member keeps it
// throughout.
func (s Spec) Env(environ []string) []string {
	env := []string{"LOCKPROBE_TOKEN=" + s.Token}
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return env
		}
	}
	return append(env, "GOMAXPROCS=1", proto.EnvStartGOMAXPROCS+"=1")
}

// Process is a started member.
type Process interface {
	// PID is its process id on this host.
	PID() int
	// Wait blocks until it has ended and says how.
	Wait() Exit
	// Kill ends it now, also when it is stopped.
	Kill() error
}

// Exit is how a member ended.
type Exit struct {
	At     time.Time // when the controller learnt of it
	Status string    // "exit status 0", "signal: killed", "silent for 10s", ...
	Signal string    // the signal's name when a signal ended it
}

// startChild starts a member as a child process of the controller: its own process group (a
// terminal's Ctrl-C reaches the controller only, which stops the lockers over the wire), and
// Pdeathsig so that the kernel kills it if the controller dies without stopping it.
func startChild(exe string) func(Spec) (Process, error) {
	return func(s Spec) (Process, error) {
		cmd := exec.Command(exe, s.Args()...)
		environ := os.Environ()
		cmd.Env = append(environ, s.Env(environ)...)
		cmd.Stdout, cmd.Stderr = s.Log, s.Log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return child{cmd}, nil
	}
}

type child struct{ cmd *exec.Cmd }

func (c child) PID() int { return c.cmd.Process.Pid }

func (c child) Wait() Exit {
	err := c.cmd.Wait()
	at := time.Now()
	ps := c.cmd.ProcessState
	if ps == nil {
		return Exit{At: at, Status: fmt.Sprintf("unknown: %v", err)}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{At: at, Status: ps.String(), Signal: ws.Signal().String()}
	}
	return Exit{At: at, Status: ps.String()}
}

func (c child) Kill() error {
	// Resume a stopped member first so that it can leave its FUSE waits and be reaped.
	_ = c.cmd.Process.Signal(syscall.SIGCONT)
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
