// Package launch starts lockprobe's lockers and observers on the nodes of a cluster with the
// cluster's own tools: Slurm's srun (one job step for all of them) or ssh (one session each).
//
// Every command is an argument vector: nothing taken from the command line passes through a
// shell on this host, and what ssh hands to the remote user's shell is quoted word by word. The
// binary reaches the nodes through a path they already share when it is the same file there
// (checked by its SHA-256), else it is copied with Slurm's sbcast or with scp. The run's token
// never appears on a command line: srun exports it from its own environment, ssh sessions read
// it from their standard input. A member that fails to start is reported with one line naming
// its node. Stop cancels what is still running: the Slurm step, the ssh sessions.
//
// The package knows nothing of the controller: control hands it the members to start once it
// listens (Plan) and watches the Job.
package launch

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Kind is how lockers are started.
type Kind int

// The launchers.
const (
	Local Kind = iota // lockprobe starts them itself, on this host (the default)
	Slurm             // srun, one job step
	SSH               // ssh, one session per member
)

var kindNames = [...]string{Local: "local", Slurm: "slurm", SSH: "ssh"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// MarshalText and UnmarshalText make Kind a flag value (flag.TextVar).
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	*k = v
	return err
}

// ParseKind reads a -launcher value.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if s == n {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown launcher %q (want local, slurm or ssh)", s)
}

// Spread is how lockers are laid out over the nodes, in Slurm's words.
type Spread int

// The layouts.
const (
	Block  Spread = iota // consecutive lockers fill one node before the next
	Cyclic               // locker i on node i mod nodes
)

var spreadNames = [...]string{Block: "block", Cyclic: "cyclic"}

func (s Spread) String() string {
	if int(s) < len(spreadNames) {
		return spreadNames[s]
	}
	return fmt.Sprintf("Spread(%d)", int(s))
}

// MarshalText and UnmarshalText make Spread a flag value (flag.TextVar).
func (s Spread) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Spread) UnmarshalText(b []byte) error {
	v, err := ParseSpread(string(b))
	*s = v
	return err
}

// ParseSpread reads a -spread value.
func ParseSpread(s string) (Spread, error) {
	for k, n := range spreadNames {
		if s == n {
			return Spread(k), nil
		}
	}
	return 0, fmt.Errorf("unknown spread %q (want block or cyclic)", s)
}

// Place returns the node index of each of procs lockers over nodes nodes. Block gives the first
// procs%nodes nodes one locker more than the others, as Slurm's block distribution does when
// every node has room.
func Place(procs, nodes int, s Spread) []int {
	out := make([]int, procs)
	if nodes <= 0 {
		return out
	}
	if s == Cyclic {
		for i := range out {
			out[i] = i % nodes
		}
		return out
	}
	per, extra := procs/nodes, procs%nodes
	i := 0
	for n := range nodes {
		size := per
		if n < extra {
			size++
		}
		for range size {
			out[i] = n
			i++
		}
	}
	return out
}

// Node is one node a launcher runs on.
type Node struct {
	// Name is the node's name for the launcher: Slurm's NodeName, or the -hosts entry.
	Name string
	// Addr is the address the node is reached at (NodeAddr, or ssh's HostName resolved), for
	// choosing the controller's address. Optional: empty when it could not be found.
	Addr string
}

// Delivery says where the binary is on the nodes and how it got there.
type Delivery struct {
	// Path is the binary's path on every node.
	Path string
	// Copied is true when the launcher copied the binary to Path (and removes it at Close).
	Copied bool
	// How says it in words for the summary: "shared path /x", "copied with sbcast to /tmp/...".
	How string
}

// Member is one process to start: a locker (ID 0..N-1) or a node's observer.
type Member struct {
	ID       int
	Observer bool
	Node     int // index into the launcher's nodes
}

// Plan is what to start, once the controller listens.
type Plan struct {
	// Members in order: the lockers by id, then one observer per node (Slurm needs that order:
	// a task's rank is its locker id).
	Members []Member
	// Endpoint is the controller's address for the lockers' -connect.
	Endpoint string
	// File is the run's file, a path on the nodes (-allow).
	File string
	// Token is the secret the lockers present; it never goes on a command line.
	Token string
	// Startup bounds a locker's wait for its welcome (-startup-timeout).
	Startup time.Duration
}

// lockers counts the plan's lockers.
func (p Plan) lockers() int {
	n := 0
	for _, m := range p.Members {
		if !m.Observer {
			n++
		}
	}
	return n
}

// Job is what a launcher started.
type Job interface {
	// Exited is closed when every process the launcher started on this host has ended.
	Exited() <-chan struct{}
	// Err says how they ended, once Exited is closed: nil, a *SetupError naming the node and
	// member that failed to start, or another error.
	Err() error
	// Stop cancels what still runs (the step, the sessions) and waits for it, at most until ctx
	// ends.
	Stop(ctx context.Context) error
}

// Launcher starts members on nodes.
type Launcher interface {
	Kind() Kind
	// Nodes returns the nodes to run on.
	Nodes(ctx context.Context) ([]Node, error)
	// Deliver makes binary (a path on this host) available on every node.
	Deliver(ctx context.Context, binary string) (Delivery, error)
	// Start starts the plan's members with the delivered binary.
	Start(ctx context.Context, p Plan) (Job, error)
	// Close undoes what Nodes and Deliver did: a copied binary, an allocation of our own.
	Close(ctx context.Context) error
}

// SetupError is a problem the user can fix before a run: a missing tool, no allocation, a node
// that refuses ssh, the file missing on a node. The CLI reports it as a usage error.
type SetupError struct {
	Node   string // the node it is about, if one
	Member string // "locker 3", "observer of node 1", if one
	Msg    string
}

func (e *SetupError) Error() string {
	var b strings.Builder
	if e.Node != "" {
		b.WriteString("node " + e.Node + ": ")
	}
	if e.Member != "" {
		b.WriteString(e.Member + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func setupf(node, format string, args ...any) *SetupError {
	return &SetupError{Node: node, Msg: fmt.Sprintf(format, args...)}
}

// memberName names a member the way errors do.
func memberName(m Member, nodes []Node) string {
	if m.Observer {
		return "observer of node " + nodes[m.Node].Name
	}
	return fmt.Sprintf("locker %d", m.ID)
}

// LocalAddr returns the address of this host's interface that routes to addr: what a
// controller binds so that the nodes reach it. Nothing is sent (a UDP socket is only
// connected, which makes the kernel choose the source address).
func LocalAddr(addr string) (string, error) {
	ip := net.ParseIP(addr)
	if ip == nil {
		ips, err := net.LookupIP(addr)
		if err != nil || len(ips) == 0 {
			return "", fmt.Errorf("cannot resolve %s: %v", addr, err)
		}
		ip = ips[0]
	}
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: ip, Port: 9})
	if err != nil {
		return "", fmt.Errorf("no route to %s: %w", addr, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// lockerArgs is a member's command line after the binary, the same for both launchers but for
// how the id and the token arrive.
func lockerArgs(p Plan) []string {
	args := []string{"locker", "-connect", p.Endpoint, "-allow", p.File, "-existing"}
	if p.Startup > 0 {
		args = append(args, "-startup-timeout", p.Startup.String())
	}
	return args
}
