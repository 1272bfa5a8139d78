package analysis

import (
	"sort"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// Silence is an interval in which nothing arrived at the controller from Node (a
// lockprobe.silence span): a partition, or a frozen node. The real cut lies inside [From, To].
// Healed: the node was heard again before the run ended.
type Silence struct {
	Node     string
	From, To int64
	Healed   bool
	Lockers  []int64
}

func silenceOf(s *tracefile.Span) Silence {
	v, _ := s.Attrs.Get(semconv.SilenceHealed)
	healed, _ := v.(bool)
	sil := Silence{Node: attrStr(s, semconv.Node), From: s.Start, To: s.End, Healed: healed, Lockers: []int64{}}
	if ids, ok := s.Attrs.Get(semconv.SilenceLockers); ok {
		if list, ok := ids.([]any); ok {
			for _, id := range list {
				if n, ok := id.(int64); ok {
					sil.Lockers = append(sil.Lockers, n)
				}
			}
		}
	}
	return sil
}

// NodeSilent (a fact): nothing arrived from Node from From to To; Healed: it came back.
type NodeSilent struct {
	Node     string
	From, To int64
	Healed   bool
}

// Partitioned: Locker's node, Node, was silent — cut off — from From to To (Healed: heard
// again), and in that time the file system granted Other a conflicting lock that Locker still
// held. Unlocked: Locker's own unlock succeeded later, at UnlockedAt: it never learned that it
// had lost the lock. After is From on the scenario's clock (ns after its start).
type Partitioned struct {
	Locker     int64
	Node       string
	From, To   int64
	After      int64
	Healed     bool
	Other      int64
	Unlocked   bool
	UnlockedAt int64
}

// partition explains a violation by a partition: one holder's node was silent when the other
// holder was granted the lock. It returns the evidence and what it shows, or nil.
func (d *detector) partition(x, h *Hold) ([]Evidence, *Partitioned) {
	m := d.m
	for _, pair := range [][2]*Hold{{x, h}, {h, x}} {
		cut, other := pair[0], pair[1]
		l := m.locker(cut.Locker)
		if l == nil || cut.Begin > other.Begin {
			continue // the one cut off held first: the file system gave its lock away
		}
		for _, s := range m.silences {
			if s.Node != l.Node || other.Begin < s.From || other.Begin > s.To {
				continue
			}
			p := &Partitioned{Locker: cut.Locker, Node: s.Node, From: s.From, To: s.To, After: s.From - m.run.StartNS,
				Healed: s.Healed, Other: other.Locker}
			ev := []Evidence{{At: s.From, Source: SourceController, By: Party{Locker: -1, Silence: true, Node: s.Node},
				Fact: NodeSilent{Node: s.Node, From: s.From, To: s.To, Healed: s.Healed}}}
			if (cut.How == semconv.HoldRelease || cut.How == semconv.HoldReleaseIf) && cut.End > other.Begin {
				p.Unlocked, p.UnlockedAt = true, cut.End
				ev = append(ev, Evidence{At: cut.End, Source: SourceTrace, By: lockerParty(cut.Locker),
					Fact: LockEnded{Lock: cut.lock(), How: cut.How}})
			}
			return ev, p
		}
	}
	return nil, nil
}

// sortSilences orders the silences by start, then node.
func sortSilences(s []Silence) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].From != s[j].From {
			return s[i].From < s[j].From
		}
		return s[i].Node < s[j].Node
	})
}

func (NodeSilent) fact() {}

func nonNilSilences(s []Silence) []Silence {
	if s == nil {
		return []Silence{}
	}
	return s
}
