package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// daemon is a process of the root namespace the cluster started in the foreground.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startDaemon starts name in the foreground with its output in the cluster's log folder.
func (c *Cluster) startDaemon(name string, args ...string) (*daemon, error) {
	logf, err := os.Create(filepath.Join(c.Dir, "log", name+".out"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = c.Env()
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	c.daemons = append(c.daemons, d)
	return d, nil
}

// stop ends the daemon and its process group: SIGTERM, SIGKILL after a grace period.
func (d *daemon) stop() error {
	pgid := d.cmd.Process.Pid
	_ = unix.Kill(-pgid, unix.SIGTERM)
	select {
	case <-d.exited:
		_ = unix.Kill(-pgid, unix.SIGKILL) // helpers such as slurmscriptd
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = unix.Kill(-pgid, unix.SIGKILL)
	select {
	case <-d.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", d.name, pgid)
	}
}

func (c *Cluster) slurmConf() string { return filepath.Join(c.Dir, "slurm.conf") }
func (c *Cluster) mungeSocket() string {
	return filepath.Join(c.Dir, "munge-run", "munge.socket")
}

// startSlurm starts munged and slurmctld in the root namespace; each node's init starts its
// slurmd.
func (c *Cluster) startSlurm(ctx context.Context) error {
	// munged refuses a socket folder that not everybody may enter, and a key folder others may:
	// two folders.
	keyDir, runDir := filepath.Join(c.Dir, "munge-key"), filepath.Dir(c.mungeSocket())
	if err := os.Mkdir(keyDir, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(runDir, 0o755); err != nil {
		return err
	}
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(keyDir, "munge.key"), key, 0o400); err != nil {
		return err
	}
	// -F: in the foreground, our child. -f: /var/tmp, in the key's path, may be written by
	// everybody (sticky), which munged distrusts unless forced.
	md, err := c.startDaemon("munged", "-F", "-f", "--socket="+c.mungeSocket(),
		"--key-file="+filepath.Join(keyDir, "munge.key"), "--log-file="+filepath.Join(c.Dir, "log", "munged.log"),
		"--pid-file="+filepath.Join(runDir, "munged.pid"), "--seed-file="+filepath.Join(keyDir, "munged.seed"))
	if err != nil {
		return err
	}
	if err := lptest.WaitUntil(ctx, 20*time.Millisecond, "munged", func() (bool, error) {
		select {
		case <-md.exited:
			return false, fmt.Errorf("munged exited; see %s", filepath.Join(c.Dir, "log"))
		default:
		}
		_, err := os.Stat(c.mungeSocket())
		return err == nil, nil
	}); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	for _, sub := range []string{"ctld", "spool"} {
		if err := os.Mkdir(filepath.Join(c.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(c.slurmConf(), []byte(c.slurmConfText(port)), 0o644); err != nil {
		return err
	}
	ctld, err := c.startDaemon("slurmctld", "-D", "-c", "-i", "-f", c.slurmConf())
	if err != nil {
		return err
	}
	return lptest.WaitUntil(ctx, 20*time.Millisecond, "slurmctld", func() (bool, error) {
		select {
		case <-ctld.exited:
			return false, fmt.Errorf("slurmctld exited; see %s", filepath.Join(c.Dir, "log"))
		default:
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.Addr, strconv.Itoa(port)), time.Second)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	})
}

// slurmConfText is the cluster's slurm.conf: no cgroups, no accounting, the controller on the
// bridge's address under this host's name (slurmctld checks that it runs where SlurmctldHost
// says), each node by name, address and host name, with more CPUs than this machine has
// (config_overrides) so that one step can hold a locker per process.
func (c *Cluster) slurmConfText(port int) string {
	host, _ := os.Hostname()
	d := c.Dir
	var b strings.Builder
	fmt.Fprintf(&b, `# lockprobe test cluster %s (test/e2e/cluster)
ClusterName=lp%s
SlurmctldHost=%s(%s)
SlurmctldPort=%d
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=%s
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=%s/ctld
SlurmdSpoolDir=%s/spool/%%n
SlurmctldPidFile=%s/run/slurmctld.pid
SlurmdPidFile=%s/run/slurmd-%%n.pid
SlurmctldLogFile=%s/log/slurmctld.log
SlurmdLogFile=%s/log/slurmd-%%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
SelectType=select/linear
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MessageTimeout=5
`, c.ID, c.ID, host, c.Addr, port, c.mungeSocket(), d, d, d, d, d, d)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "NodeName=%s NodeAddr=%s NodeHostname=%s CPUs=64 State=UNKNOWN\n", n.Name, n.Addr, n.Name)
	}
	b.WriteString("PartitionName=lp Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n")
	return b.String()
}

// waitSlurmNodes waits until slurmctld reports every node idle.
func (c *Cluster) waitSlurmNodes(ctx context.Context) error {
	return lptest.WaitUntil(ctx, 50*time.Millisecond, "slurm nodes idle", func() (bool, error) {
		out, err := c.Command(ctx, "sinfo", "-h", "-N", "-o", "%N %T").Output()
		if err != nil {
			return false, nil
		}
		idle := 0
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[1] == "idle" {
				idle++
			}
		}
		return idle == len(c.Nodes), nil
	})
}

// freePort returns a TCP port free on every address of this namespace just now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
