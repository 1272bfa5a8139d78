package analysis

import (
	"fmt"
	"strings"

	"github.com/lockprobe/lockprobe/semconv"
)

// connErrnos are the errors of a client that lost its connection to the file system's server.
var connErrnos = map[string]bool{
	"ENOTCONN": true, "ECONNRESET": true, "ECONNABORTED": true, "ECONNREFUSED": true, "ESHUTDOWN": true,
	"ENETDOWN": true, "ENETUNREACH": true, "EHOSTUNREACH": true, "EHOSTDOWN": true, "EPIPE": true,
}

// clientFailure is what a node's F_GETLK answers say about its client during a hold.
type clientFailure struct {
	errno    string
	evidence []Evidence
}

// clientFailed gathers the F_GETLK calls on the node of hold y's locker that failed in [y.Begin,
// to]: the observer's over the whole file, the waiters' watchers and the scenario's own queries.
// A client that lost its connection fails every call on the mount (ENOTCONN on GlusterFS), while
// the server drops its locks and grants them to others: the holder still believes it holds.
// Each asker is cited once, at its first failure.
func (d *detector) clientFailed(y *Hold, to int64) *clientFailure {
	m := d.m
	node := m.locker(y.Locker).Node
	if node == "" {
		return nil
	}
	var cf clientFailure
	seen := map[string]bool{}
	note := func(at int64, src, by, what string, o Owner) {
		if !strings.HasPrefix(o.Source, semconv.OwnerFromError) || at < y.Begin || at > to || seen[by] {
			return
		}
		seen[by] = true
		errno := strings.TrimPrefix(o.Source, semconv.OwnerFromError)
		if cf.errno == "" || (connErrnos[errno] && !connErrnos[cf.errno]) {
			cf.errno = errno
		}
		cf.evidence = append(cf.evidence, Evidence{At: at, Source: src, By: by,
			Text: fmt.Sprintf("%s failed with %s: the client on %s could not reach the file system", what, errno, node)})
	}
	for _, ob := range m.obs {
		if ob.At > to {
			break
		}
		if ob.Node == node {
			note(ob.At, SourceObserver, "observer on "+node, "F_GETLK for "+ob.QueryMode+" over the whole file", ob.Owner)
		}
	}
	for _, l := range m.lockers {
		if l.Node != node {
			continue
		}
		by := fmt.Sprintf("locker %d", l.ID)
		for _, a := range m.byLocker[l.ID] {
			for _, c := range a.Conflicts {
				note(c.At, SourceGetlk, by, "F_GETLK for its own request", c.Owner)
			}
		}
	}
	for _, g := range m.getlks {
		if m.locker(g.Locker).Node == node {
			note(g.At, SourceGetlk, fmt.Sprintf("locker %d", g.Locker), "its F_GETLK", g.Owner)
		}
	}
	if len(cf.evidence) == 0 {
		return nil
	}
	return &cf
}

// lostClient explains a violation by a holder whose client failed during the overlap: the
// earlier holder's client first, as the file system gave its lock to the later one. It returns
// the evidence and the sentence to add to the summary.
func (d *detector) lostClient(x, h *Hold, overlapEnd int64) ([]Evidence, string) {
	m := d.m
	to := overlapEnd + d.settle
	for _, pair := range [][2]*Hold{{x, h}, {h, x}} {
		lost, other := pair[0], pair[1]
		cf := d.clientFailed(lost, to)
		if cf == nil {
			continue
		}
		how := "lost its connection to the file system (" + cf.errno + ")"
		if !connErrnos[cf.errno] {
			how = "failed (F_GETLK through it returned " + cf.errno + ")"
		}
		return cf.evidence, fmt.Sprintf("; the client of locker %d on %s %s: the file system gave the lock away to locker %d while locker %d still believed it held it",
			lost.Locker, m.locker(lost.Locker).Node, how, other.Locker, lost.Locker)
	}
	return nil, ""
}
