package launch

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		procs, nodes int
		spread       Spread
		want         []int
	}{
		{12, 3, Block, []int{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}},
		{12, 3, Cyclic, []int{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}},
		{10, 3, Block, []int{0, 0, 0, 0, 1, 1, 1, 2, 2, 2}},
		{2, 3, Block, []int{0, 1}},
		{2, 3, Cyclic, []int{0, 1}},
		{5, 1, Cyclic, []int{0, 0, 0, 0, 0}},
		{0, 3, Block, []int{}},
	} {
		if got := Place(tc.procs, tc.nodes, tc.spread); !slices.Equal(got, tc.want) {
			t.Errorf("Place(%d, %d, %s) = %v, want %v", tc.procs, tc.nodes, tc.spread, got, tc.want)
		}
	}
}

func TestParseValueSets(t *testing.T) {
	for _, k := range []Kind{Local, Slurm, SSH} {
		if got, err := ParseKind(k.String()); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	for _, s := range []Spread{Block, Cyclic} {
		if got, err := ParseSpread(s.String()); err != nil || got != s {
			t.Errorf("ParseSpread(%q) = %v, %v", s.String(), got, err)
		}
	}
	for _, bad := range []string{"", "Slurm", "mpi", "slurm "} {
		if _, err := ParseKind(bad); err == nil {
			t.Errorf("ParseKind(%q) accepted", bad)
		}
	}
	if _, err := ParseSpread("plane"); err == nil {
		t.Error("ParseSpread(plane) accepted")
	}
}

// TestSSHArgsReachTheRemoteShellVerbatim hands hostile words through the quoting a remote
// shell gets (ssh joins the command's words with spaces and runs $SHELL -c on the result) and
// checks that a real sh sees exactly those words: no expansion, no splitting, no second command.
func TestSSHArgsReachTheRemoteShellVerbatim(t *testing.T) {
	l := &sshLauncher{opts: SSHOptions{Config: "/etc/x y/config"}}
	words := []string{"/data/my file", "it's", `$(touch /tmp/pwned)`, "`id`", "a;b", "*", "$HOME", `"q"`, `back\slash`, "", "-x", "new\nline"}
	args := l.sshArgs("node1", append([]string{"printf", `%s\000`}, words...)...)
	i := slices.Index(args, "node1")
	if i < 0 || args[i-1] != "--" {
		t.Fatalf("no -- before the host: %q", args)
	}
	if !slices.Contains(args[:i], "BatchMode=yes") || !slices.Contains(args[:i], "/etc/x y/config") || !slices.Contains(args[:i], "-T") {
		t.Errorf("ssh options %q: want -F config, BatchMode=yes, -T", args[:i])
	}
	remote := strings.Join(args[i+1:], " ")
	out, err := exec.Command("sh", "-c", remote).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", remote, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, words) {
		t.Errorf("the remote shell saw %q\nwant %q", got, words)
	}
}

func TestHostNames(t *testing.T) {
	for _, h := range []string{"n1", "node-01.cluster", "root@n1", "10.0.0.5", "[fe80::1]"} {
		if _, err := NewSSH(SSHOptions{Hosts: []string{h}}); err != nil && !strings.Contains(err.Error(), "not found on PATH") {
			t.Errorf("host %q refused: %v", h, err)
		}
	}
	for _, h := range []string{"-oProxyCommand=x", "a b", "n1;id", "$(id)", "", "n1:22", "a/b"} {
		_, err := NewSSH(SSHOptions{Hosts: []string{h}})
		var se *SetupError
		if !errors.As(err, &se) {
			t.Errorf("host %q: %v, want a SetupError", h, err)
		}
	}
	if _, err := NewSSH(SSHOptions{Hosts: []string{"n1", "n1"}}); err == nil {
		t.Error("a host given twice was accepted")
	}
}

func TestStepArgs(t *testing.T) {
	s := &slurm{jobID: "42", nodes: []Node{{Name: "n0"}, {Name: "n1"}}}
	args := s.stepArgs("lockprobe-x", 5, true)
	for _, want := range []string{"--jobid=42", "--job-name=lockprobe-x", "-m", "arbitrary", "-K1", "-l", "--chdir=/", "--export=LOCKPROBE_TOKEN"} {
		if !slices.Contains(args, want) {
			t.Errorf("srun args %q lack %q", args, want)
		}
	}
	p := Plan{Members: []Member{{ID: 0}, {ID: 1, Node: 1}, {Observer: true, ID: -1}, {Observer: true, ID: -2, Node: 1}},
		Endpoint: "tcp://10.0.0.1:5000", File: "/lustre/x", Token: "s3cret", Startup: time.Minute}
	la := lockerArgs(p)
	if slices.ContainsFunc(la, func(a string) bool { return strings.Contains(a, "s3cret") }) {
		t.Errorf("the token is on the lockers' command line: %q", la)
	}
	if p.lockers() != 2 {
		t.Errorf("lockers() = %d, want 2", p.lockers())
	}
}

func TestParseSlurmOutput(t *testing.T) {
	for _, tc := range []struct {
		line string
		rank int
		text string
		ok   bool
	}{
		{"3: lockprobe locker: -allow /x: no such file", 3, "lockprobe locker: -allow /x: no such file", true},
		{" 11: sha256:ab", 11, "sha256:ab", true},
		{"srun: error: n1: task 2: Exited with exit code 2", 0, "", false},
		{"x: y", 0, "", false},
	} {
		rank, text, ok := parseLabel(tc.line)
		if rank != tc.rank || text != tc.text || ok != tc.ok {
			t.Errorf("parseLabel(%q) = %d %q %v", tc.line, rank, text, ok)
		}
	}
	j := &slurmJob{s: &slurm{log: logger(nil), nodes: []Node{{Name: "n0"}, {Name: "n1"}}},
		members: []Member{{ID: 0}, {ID: 1, Node: 1}, {ID: 2, Node: 1}}, last: map[int]string{}}
	for _, l := range []string{"2: lockprobe locker: -allow /x/f: stat /x/f: no such file or directory",
		"srun: error: n1: tasks 2,5: Exited with exit code 2", "srun: error: n0: tasks 0-1: Terminated"} {
		j.line(l)
	}
	j.p = &proc{exited: make(chan struct{})}
	var se *SetupError
	if err := j.Err(); !errors.As(err, &se) || se.Node != "n1" || se.Member != "locker 2" || !strings.Contains(se.Msg, "no such file") {
		t.Errorf("Err() = %v, want node n1, locker 2, the locker's own line", err)
	}
	if m := grantedRE.FindStringSubmatch("salloc: Granted job allocation 1234\n"); m == nil || m[1] != "1234" {
		t.Errorf("salloc's grant not read: %v", m)
	}
	addrs := parseNodeAddrs("n0 10.1.0.10\nn1 10.1.0.11\nn0 10.1.0.10\n")
	if addrs["n0"] != "10.1.0.10" || addrs["n1"] != "10.1.0.11" || len(addrs) != 2 {
		t.Errorf("parseNodeAddrs: %v", addrs)
	}
	if h := sshHostName("user root\nhostname 10.2.0.11\nport 22\n"); h != "10.2.0.11" {
		t.Errorf("sshHostName: %q", h)
	}
}

func TestNewSlurmRefuses(t *testing.T) {
	var se *SetupError
	if _, err := NewSlurm(SlurmOptions{Name: "x", RunDir: t.TempDir()}); !errors.As(err, &se) || !strings.Contains(err.Error(), "no Slurm allocation") {
		t.Errorf("no allocation, no -nodes: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := NewSlurm(SlurmOptions{Name: "x", RunDir: t.TempDir(), JobID: "1"}); !errors.As(err, &se) || !strings.Contains(err.Error(), "srun not found on PATH") {
		t.Errorf("no srun: %v", err)
	}
}

func TestLocalAddr(t *testing.T) {
	got, err := LocalAddr("127.0.0.1")
	if err != nil || got != "127.0.0.1" {
		t.Errorf("LocalAddr(127.0.0.1) = %q, %v", got, err)
	}
	if _, err := LocalAddr("no-such-host.invalid"); err == nil {
		t.Error("an unresolvable name gave an address")
	}
}

// TestProcReportsEveryLineBeforeItsEnd: the failure line a process writes just before it exits
// is there when its end is told.
func TestProcReportsEveryLineBeforeItsEnd(t *testing.T) {
	var lines []string
	p, err := startProc(exec.Command("sh", "-c", "echo one; echo two >&2; exit 3"), func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.waitOrKill(ctx); err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	if !slices.Equal(lines, []string{"one", "two"}) || p.exitCode() != 3 {
		t.Errorf("lines %q, exit %d; want one, two, 3", lines, p.exitCode())
	}
}
