package control

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
)

// Group is a set of members started together on the nodes of a cluster (a Slurm job step, ssh
// sessions): what Options.Launch returns. The controller has no process of theirs to wait for;
// the group's end is their end.
type Group interface {
	// Exited is closed when everything the launcher started on this host has ended.
	Exited() <-chan struct{}
	// Err says how, once Exited is closed: nil, or why (a member that failed to start names its
	// node).
	Err() error
	// Stop cancels what still runs and waits for it, at most until ctx ends.
	Stop(ctx context.Context) error
}

// StartError says the members on the cluster's nodes did not start; Err is the launcher's
// reason (for a member that could not start, one line naming its node).
type StartError struct{ Err error }

func (e *StartError) Error() string { return "lockers did not start: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// planLaunched names the members of a run across nodes: locker i on Nodes[NodeOf[i]], one
// observer per node, all of them started by Options.Launch and connecting from their node.
func (r *run) planLaunched() {
	file := r.opts.Files[0]
	for i := range r.opts.Queues {
		r.members = append(r.members, &member{id: i, role: roleLocker, node: r.opts.Nodes[r.opts.NodeOf[i]], file: file, remote: true, launched: true})
	}
	if !r.opts.NoObservers {
		for k, n := range r.opts.Nodes {
			r.members = append(r.members, &member{id: -1 - k, role: roleObserver, node: n, file: file, remote: true, launched: true})
		}
	}
}

// launch starts every launched member through Options.Launch, on the TCP endpoint.
func (r *run) launch(ctx context.Context) error {
	var specs []Spec
	for _, m := range r.members {
		if m.launched {
			specs = append(specs, Spec{ID: m.id, Role: m.role.String(), Node: m.node, File: m.file, Endpoint: r.conn.RemoteEndpoint(),
				Token: r.token, StartupTimeout: r.opts.StartupTimeout + 5*time.Second})
		}
	}
	if len(specs) == 0 {
		return nil
	}
	g, err := r.opts.Launch(ctx, specs)
	if err != nil {
		return &StartError{err}
	}
	r.group, r.groupDone = g, g.Exited()
	for _, m := range r.members {
		if m.launched {
			m.to(phaseStarted)
		}
	}
	return nil
}

// groupExited marks the launched members that are still there as exited: nothing of them runs
// here any more. It returns the group's error.
func (r *run) groupExited() error {
	r.groupDone = nil
	err := r.group.Err()
	status := "its launcher ended"
	if err != nil {
		status += ": " + err.Error()
	}
	for _, m := range r.members {
		if m.launched && m.phase != phaseExited {
			r.exited(exitNote{m: m, exit: Exit{At: time.Now(), Status: status}})
		}
	}
	return err
}

// stopGroup cancels what the launcher still runs (members that did not leave when told to,
// members on a node that never came back) and waits for that, bounded. With wait, every member
// has left: the launcher ends by itself after them (srun with its last task), and gets the
// grace period for it first.
func (r *run) stopGroup(wait bool) {
	if r.group == nil || r.groupDone == nil {
		return
	}
	if !r.groupEnds(wait) {
		r.cancelGroup()
	}
	if err := r.groupExited(); err != nil {
		r.opts.Log.Info("launched members ended", "err", err)
	}
}

// groupEnds says whether the group has ended, waiting up to the grace period for it if wait.
func (r *run) groupEnds(wait bool) bool {
	if !wait {
		select {
		case <-r.groupDone:
			return true
		default:
			return false
		}
	}
	timer := time.NewTimer(r.opts.Grace)
	defer timer.Stop()
	select {
	case <-r.groupDone:
		return true
	case <-timer.C:
		return false
	}
}

// cancelGroup has the launcher cancel what it still runs, bounded, and names the members that
// had not left.
func (r *run) cancelGroup() {
	r.opts.Log.Warn("stopping what the launcher still runs")
	// A launcher waiting on a node that does not answer (srun for a partitioned node's tasks) is
	// killed after the grace period: the cancellation has been asked for, and the run must end.
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Grace)
	defer cancel()
	if err := r.group.Stop(ctx); err != nil {
		r.opts.Log.Warn("stopping the launched members", "err", err)
	}
	var left []string
	for _, m := range r.members {
		if m.launched && !m.gone() {
			left = append(left, m.label())
		}
	}
	if len(left) > 0 {
		r.res.Killed = append(r.res.Killed, fmt.Sprintf("%s (cancelled through the launcher)", strings.Join(left, ", ")))
	}
}

// defaultSilentAfter is how long a node may say nothing before it is named silent: each of its
// members pings every 2 s (a burst of round trips), so a node in touch is heard at least that
// often.
const defaultSilentAfter = 3 * time.Second

// silence is one interval during which nothing arrived from a node: from its last message
// before the gap to its first after (or the run's end). The real cut lies inside it.
type silence struct {
	node     string
	from, to time.Time
	healed   bool
}

// checkSilence names the nodes of remote members from which nothing has arrived for
// Options.SilentAfter. Their members are not taken for gone: they keep running their queues,
// and what they record arrives when the link returns; a node that never returns ends the run
// at its timeout.
func (r *run) checkSilence(now time.Time) {
	heard := map[string]time.Time{}
	for _, m := range r.members {
		if m.remote && m.connected() && m.lastHeard.After(heard[m.node]) {
			heard[m.node] = m.lastHeard
		}
	}
	for node, t := range heard {
		if now.Sub(t) > r.opts.SilentAfter && r.silent[node] == nil {
			r.silent[node] = &silence{node: node, from: t}
			r.opts.Log.Warn("node silent", "node", node, "since", t.Format(time.RFC3339Nano))
		}
	}
}

// heard ends the silence of m's node, if it was silent, and records the interval.
func (r *run) heard(m *member, at time.Time) {
	s := r.silent[m.node]
	if s == nil {
		return
	}
	delete(r.silent, m.node)
	s.to, s.healed = at, true
	r.opts.Log.Warn("node heard again", "node", s.node, "silent", s.to.Sub(s.from).Round(time.Millisecond))
	r.recordSilence(s)
	// What the controller sent during the silence is retransmitted by TCP on a backed-off
	// timer: up to about the silence's length after the heal, the node may not hear us.
	r.reachable = later(r.reachable, at.Add(min(s.to.Sub(s.from), maxHealWait)+time.Second))
}

// maxHealWait bounds how long the end of a run waits for a healed node to hear it.
const maxHealWait = 30 * time.Second

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// graceAfterHeal is how long the run's end waits for members to leave: the grace period, or
// longer when a node was heard again lately, until it hears the controller again.
func (r *run) graceAfterHeal() time.Duration {
	return max(r.opts.Grace, time.Until(r.reachable))
}

// closeSilences records the silences still open when the run ends: nodes that never returned.
func (r *run) closeSilences() {
	nodes := make([]string, 0, len(r.silent))
	for n := range r.silent {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		s := r.silent[n]
		s.to = r.endAt
		r.recordSilence(s)
		delete(r.silent, n)
	}
}

// recordSilence writes a lockprobe.silence span: the node, its lockers, the interval, and
// whether the node was heard again.
func (r *run) recordSilence(s *silence) {
	var ids []int64
	for _, m := range r.members {
		if m.node == s.node && m.role == roleLocker {
			ids = append(ids, int64(m.id))
		}
	}
	span := &tracepb.Span{TraceId: r.traceID[:], SpanId: newSpanID(), ParentSpanId: r.rootID[:], Name: semconv.SpanSilence,
		StartTimeUnixNano: uint64(s.from.UnixNano()), EndTimeUnixNano: uint64(s.to.UnixNano()),
		Attributes: []*commonpb.KeyValue{str(semconv.Node, s.node), boolean(semconv.SilenceHealed, s.healed), ints(semconv.SilenceLockers, ids)}}
	r.writeRecord(resourceSpans(controllerResource(r.opts.Version), span))
}
