// Package locktable is simfs's lock table dump: its types, its text form (Write, Parse) and the
// client of the control socket that serves it (Fetch). It has no FUSE in it, so that lockprobe's
// controller can read a dump without linking a file system server.
//
// The text form is line based, one record per line, values that are text quoted as Go strings:
//
//	simfs-locks v1
//	at 2026-12-01T11:00:00.123456789Z
//	mode flock
//	detect first
//	fault "drop-grant:node=1"
//	lock id=3 state=granted node=0 pid=1234 kind=fcntl type=write start=0 end=-1 path="/f" owner=0x1a2b enqueued=1764... granted=1764... blocked_by=0
//	event at=1764... lock=5 node=1 what="completion dropped (drop-grant:node=1)"
//	end
package locktable

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Header is the first line of a dump.
const Header = "simfs-locks v1"

// State is where a lock is in its life on the server.
type State string

// The states.
const (
	Granted     State = "granted"     // granted, and the holder knows
	Waiting     State = "waiting"     // queued behind a conflicting lock
	Undelivered State = "undelivered" // granted, completion dropped: the waiter still waits (drop-grant)
	Delayed     State = "delayed"     // granted, completion on its way late (delay-grant)
	Ghost       State = "ghost"       // unlocked by its owner, but left on the server (ghost)
)

// Lock is one lock or request in the table.
type Lock struct {
	ID    uint64
	State State
	Node  int
	PID   int64  // the requester's process id in simfs's pid namespace
	Kind  string // fcntl | flock (FUSE does not tell posix from OFD)
	Type  string // read | write
	Start int64
	End   int64 // inclusive; -1 = to the end of the file
	Path  string
	Owner uint64 // the kernel's lock owner id
	// Enqueued is when the request arrived, Granted when it was granted (zero while waiting).
	Enqueued, Granted time.Time
	// BlockedBy is the id of the first conflicting lock of a waiter (0 otherwise): the one
	// Lustre's deadlock detection follows.
	BlockedBy uint64
}

// Event is one thing the server did that a ticket needs: a fault acting, an eviction.
type Event struct {
	At   time.Time
	Lock uint64 // 0 when no lock
	Node int
	What string
}

// Table is one dump.
type Table struct {
	At     time.Time
	Mode   string
	Detect string
	Faults []string
	Locks  []Lock
	Events []Event
}

// Write renders t in the text form.
func Write(w io.Writer, t *Table) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, Header)
	fmt.Fprintf(bw, "at %s\n", t.At.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(bw, "mode %s\n", t.Mode)
	fmt.Fprintf(bw, "detect %s\n", t.Detect)
	for _, f := range t.Faults {
		fmt.Fprintf(bw, "fault %q\n", f)
	}
	for _, l := range t.Locks {
		fmt.Fprintf(bw, "lock id=%d state=%s node=%d pid=%d kind=%s type=%s start=%d end=%d path=%q owner=%#x enqueued=%d granted=%d blocked_by=%d\n",
			l.ID, l.State, l.Node, l.PID, l.Kind, l.Type, l.Start, l.End, l.Path, l.Owner, nanos(l.Enqueued), nanos(l.Granted), l.BlockedBy)
	}
	for _, e := range t.Events {
		fmt.Fprintf(bw, "event at=%d lock=%d node=%d what=%q\n", nanos(e.At), e.Lock, e.Node, e.What)
	}
	fmt.Fprintln(bw, "end")
	return bw.Flush()
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Parse reads the text form. A malformed line is an error naming its number; a dump without
// its end line is incomplete and an error too.
func Parse(r io.Reader) (*Table, error) {
	t := &Table{Faults: []string{}, Locks: []Lock{}, Events: []Event{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	ended := false
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			if text != Header {
				return nil, fmt.Errorf("locktable: line 1: %q is not %q", cut(text), Header)
			}
			continue
		}
		if ended {
			return nil, fmt.Errorf("locktable: line %d: text after the end line", line)
		}
		word, rest, _ := strings.Cut(text, " ")
		var err error
		switch word {
		case "at":
			t.At, err = time.Parse(time.RFC3339Nano, rest)
		case "mode":
			t.Mode = rest
		case "detect":
			t.Detect = rest
		case "fault":
			var f string
			f, err = strconv.Unquote(rest)
			t.Faults = append(t.Faults, f)
		case "lock":
			var l Lock
			l, err = parseLock(rest)
			t.Locks = append(t.Locks, l)
		case "event":
			var e Event
			e, err = parseEvent(rest)
			t.Events = append(t.Events, e)
		case "end":
			ended = true
		default:
			err = fmt.Errorf("unknown record %q", cut(word))
		}
		if err != nil {
			return nil, fmt.Errorf("locktable: line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("locktable: %w", err)
	}
	if line == 0 {
		return nil, errors.New("locktable: empty dump")
	}
	if !ended {
		return nil, errors.New("locktable: incomplete dump (no end line)")
	}
	return t, nil
}

func parseLock(s string) (Lock, error) {
	var l Lock
	kv, err := fields(s)
	if err != nil {
		return l, err
	}
	var enq, gr int64
	for k, v := range kv {
		switch k {
		case "id":
			l.ID, err = strconv.ParseUint(v, 10, 64)
		case "state":
			l.State = State(v)
		case "node":
			l.Node, err = strconv.Atoi(v)
		case "pid":
			l.PID, err = strconv.ParseInt(v, 10, 64)
		case "kind":
			l.Kind = v
		case "type":
			l.Type = v
		case "start":
			l.Start, err = strconv.ParseInt(v, 10, 64)
		case "end":
			l.End, err = strconv.ParseInt(v, 10, 64)
		case "path":
			l.Path = v
		case "owner":
			l.Owner, err = strconv.ParseUint(v, 0, 64)
		case "enqueued":
			enq, err = strconv.ParseInt(v, 10, 64)
		case "granted":
			gr, err = strconv.ParseInt(v, 10, 64)
		case "blocked_by":
			l.BlockedBy, err = strconv.ParseUint(v, 10, 64)
		default:
			err = fmt.Errorf("unknown key %q", cut(k))
		}
		if err != nil {
			return l, fmt.Errorf("lock %s: %w", k, err)
		}
	}
	l.Enqueued, l.Granted = fromNanos(enq), fromNanos(gr)
	return l, nil
}

func parseEvent(s string) (Event, error) {
	var e Event
	kv, err := fields(s)
	if err != nil {
		return e, err
	}
	for k, v := range kv {
		switch k {
		case "at":
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			e.At = fromNanos(n)
		case "lock":
			e.Lock, err = strconv.ParseUint(v, 10, 64)
		case "node":
			e.Node, err = strconv.Atoi(v)
		case "what":
			e.What = v
		default:
			err = fmt.Errorf("unknown key %q", cut(k))
		}
		if err != nil {
			return e, fmt.Errorf("event %s: %w", k, err)
		}
	}
	return e, nil
}

// fields splits `k=v k="quoted v"` into a map.
func fields(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimLeft(s, " "); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.Contains(k, " ") {
			return nil, fmt.Errorf("%q is not key=value", cut(s))
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("%s: bad quoted value", cut(k))
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s given twice", cut(k))
		}
		out[k] = v
		s = rest
	}
	return out, nil
}

// cut keeps error text short and on one line.
func cut(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
