package control

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// member is one locker or observer process of the run, as the controller tracks it.
type member struct {
	id        int    // locker id; observers are -1-k
	role      string // "locker" | "observer"
	node      string
	file      string
	identity  string // DEALER identity, known from its hello
	pid       int
	remote    bool // runs on another node: not started here, no process to wait for
	lastHeard time.Time
	tid       int // its lock thread, from its ready
	cmd       *exec.Cmd

	welcomed, ready, commanded, acked, idle, bye bool
	exited                                       bool
	exitAt                                       time.Time
	exitStatus, exitSignal                       string
	lastSeq, received, lost                      uint64
	commandsSentAt                               time.Time
	welcomedAt                                   time.Time
	commandsSends                                int
	lockerSpanID                                 string // hex id of its lockprobe.locker span
	traceID                                      string
	snapshotDone                                 bool
}

func (m *member) label() string {
	if m.role == "observer" {
		return fmt.Sprintf("observer on %s", m.node)
	}
	return fmt.Sprintf("locker %d", m.id)
}

// alive says whether the process may still be running.
func (m *member) alive() bool { return !m.exited }

type exitNote struct {
	m   *member
	err error
	at  time.Time
}

// spawn starts one member as `lockprobe locker ...`. The token travels in the environment, not
// on the command line where every user of the node could read it. Pdeathsig makes the kernel
// kill the locker if the controller dies without stopping it.
func (r *run) spawn(m *member, exits chan<- exitNote, logFile *os.File) error {
	args := []string{"locker", "-connect", r.conn.Addr(), "-id", strconv.Itoa(m.id), "-role", m.role, "-node", m.node, "-allow", m.file,
		"-startup-timeout", (r.opts.StartupTimeout + 5*time.Second).String()}
	cmd := exec.Command(r.opts.Executable, args...)
	cmd.Env = append(os.Environ(), "LOCKPROBE_TOKEN="+r.token)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.label(), err)
	}
	m.cmd, m.pid = cmd, cmd.Process.Pid
	go func() {
		err := cmd.Wait()
		exits <- exitNote{m: m, err: err, at: time.Now()}
	}()
	return nil
}

// describeExit turns a Wait error into the exit status and signal the report shows.
func describeExit(cmd *exec.Cmd) (status, signal string) {
	ps := cmd.ProcessState
	if ps == nil {
		return "unknown", ""
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ps.String(), ws.Signal().String()
	}
	return ps.String(), ""
}
