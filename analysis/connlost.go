package analysis

import (
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
	seen := map[Party]bool{}
	note := func(at int64, src string, by Party, asked Asked, query string, o Owner) {
		if !strings.HasPrefix(o.Source, semconv.OwnerFromError) || at < y.Begin || at > to || seen[by] {
			return
		}
		seen[by] = true
		errno := strings.TrimPrefix(o.Source, semconv.OwnerFromError)
		if cf.errno == "" || (connErrnos[errno] && !connErrnos[cf.errno]) {
			cf.errno = errno
		}
		cf.evidence = append(cf.evidence, Evidence{At: at, Source: src, By: by,
			Fact: ClientFailed{Asked: asked, Query: query, Errno: errno, Node: node}})
	}
	for _, ob := range m.obs {
		if ob.At > to {
			break
		}
		if ob.Node == node {
			note(ob.At, SourceObserver, observerParty(node), AskedObserver, ob.QueryMode, ob.Owner)
		}
	}
	for _, l := range m.lockers {
		if l.Node != node {
			continue
		}
		for _, a := range m.byLocker[l.ID] {
			for _, c := range a.Conflicts {
				note(c.At, SourceGetlk, lockerParty(l.ID), AskedOwnRequest, "", c.Owner)
			}
		}
	}
	for _, g := range m.getlks {
		if m.locker(g.Locker).Node == node {
			note(g.At, SourceGetlk, lockerParty(g.Locker), AskedScenario, "", g.Owner)
		}
	}
	if len(cf.evidence) == 0 {
		return nil
	}
	return &cf
}

// lostClient explains a violation by a holder whose client failed during the overlap: the
// earlier holder's client first, as the file system gave its lock to the later one. It returns
// the evidence and what it shows, or nil.
func (d *detector) lostClient(x, h *Hold, overlapEnd int64) ([]Evidence, *LostClient) {
	m := d.m
	to := overlapEnd + d.settle
	for _, pair := range [][2]*Hold{{x, h}, {h, x}} {
		lost, other := pair[0], pair[1]
		cf := d.clientFailed(lost, to)
		if cf == nil {
			continue
		}
		return cf.evidence, &LostClient{Locker: lost.Locker, Node: m.locker(lost.Locker).Node, Errno: cf.errno,
			Conn: connErrnos[cf.errno], Other: other.Locker}
	}
	return nil, nil
}
