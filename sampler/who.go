package sampler

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
)

// WhoRow is one holder or waiter of `lockprobe who`.
type WhoRow struct {
	Role    string `json:"role"` // holder | waiter | requester (in casacore's request list, between its tries)
	PID     int    `json:"pid"`  // -1: an OFD lock no process's fdinfo names
	Command string `json:"command"`
	Kind    string `json:"kind"`
	Mode    string `json:"mode"`
	Start   int64  `json:"start"`
	Len     int64  `json:"len"` // 0: to the end of the file
	// Call is the waiter's pending call, as read from its /proc/PID/syscall and memory.
	Call string `json:"call,omitempty"`
	// BlockedBy is the pid holding what the waiter wants (0: nobody shown).
	BlockedBy int `json:"blocked_by,omitempty"`
	// Here is false for a pid that is no process of this node.
	Here  bool   `json:"here"`
	State string `json:"state,omitempty"`
	Wchan string `json:"wchan,omitempty"`
}

// WhoView is what `lockprobe who` shows of one file.
type WhoView struct {
	File string   `json:"file"`
	Node string   `json:"node"`
	Rows []WhoRow `json:"rows"`
	// Elsewhere are pids that hold or block but are no process here, with what to run.
	Elsewhere []string `json:"elsewhere"`
}

// Who turns one look into the view of file f.
func Who(l *Look, f *File) WhoView {
	node, _ := os.Hostname()
	v := WhoView{File: f.Path, Node: node, Rows: []WhoRow{}, Elsewhere: []string{}}
	cmd := func(pid int) string { return strings.Join(host.Cmdline(pid), " ") }
	state := func(pid, tid int) (string, string) {
		if p := l.Proc(pid); p != nil {
			for _, t := range p.Threads {
				if tid == 0 || t.TID == tid {
					return t.State, t.Wchan
				}
			}
		}
		if ps, err := host.ReadProcess(pid, tid); err == nil {
			return ps.State, ps.Wchan
		}
		return "", ""
	}
	for _, h := range l.Holders([]*File{f}) {
		if h.File != f {
			continue
		}
		e := h.Entry
		r := WhoRow{Role: "holder", PID: h.PID, Command: cmd(h.PID), Kind: kindName(e.Class), Mode: strings.ToLower(e.Mode),
			Start: e.Start, Len: lenOf(e), Here: host.ProcessExists(h.PID)}
		r.State, r.Wchan = state(h.PID, 0)
		v.Rows = append(v.Rows, r)
	}
	// A FUSE file system (GlusterFS) keeps its locks out of /proc/locks: F_GETLK from lockprobe's
	// descriptor names a holder of this node all the same.
	seen := map[string]bool{}
	for _, r := range v.Rows {
		seen[fmt.Sprint(r.PID, r.Mode, r.Start, r.Len)] = true
	}
	for _, ob := range l.Observed {
		o := ob.Owner
		key := fmt.Sprint(o.PID, o.Mode, o.Start, o.Len)
		if ob.File != f || o.Mode == semconv.ModeNone || o.PID <= 0 || seen[key] || !host.ProcessExists(o.PID) {
			continue
		}
		seen[key] = true
		r := WhoRow{Role: "holder", PID: o.PID, Command: cmd(o.PID), Kind: "posix", Mode: o.Mode.String(), Start: o.Start, Len: o.Len,
			Here: true, Call: "named by F_GETLK; /proc/locks does not show it"}
		r.State, r.Wchan = state(o.PID, 0)
		v.Rows = append(v.Rows, r)
	}
	for _, p := range l.Procs {
		for _, pd := range p.Pending {
			if pd.File != f {
				continue
			}
			c := pd.Call
			r := WhoRow{Role: "waiter", PID: p.PID, Command: strings.Join(p.Argv, " "), Kind: c.Kind.String(), Mode: c.Mode.String(),
				Start: c.Start, Len: c.Len, Call: c.Text(), BlockedBy: pd.Owner.PID, Here: true}
			r.State, r.Wchan = state(p.PID, pd.TID)
			v.Rows = append(v.Rows, r)
			switch {
			case pd.Owner.PID > 0 && !host.ProcessExists(pd.Owner.PID):
				v.Elsewhere = append(v.Elsewhere, fmt.Sprintf("pid %d blocks pid %d but is no process of %s: its holder runs on another node of the file system — run `lockprobe who %s` there",
					pd.Owner.PID, p.PID, node, f.Path))
			case pd.Owner.PID == 0 && pd.Owner.Mode != semconv.ModeNone && pd.Owner.Source == semconv.OwnerFromGetlk:
				v.Elsewhere = append(v.Elsewhere, fmt.Sprintf("a %s lock on %s blocks pid %d; F_GETLK names its holder pid 0, a process %s does not have (FUSE file systems such as GlusterFS say 0 for a holder of another node): run `lockprobe who %s` on the other nodes that mount it",
					pd.Owner.Mode, rangeText(pd.Owner.Start, pd.Owner.Len), p.PID, node, f.Path))
			}
		}
	}
	for _, rq := range CasacoreRequests(f.Path) {
		pid := int(rq.PID)
		if p := l.Proc(pid); p != nil && len(p.Pending) > 0 {
			continue // in a lock call now: a waiter row says more
		}
		r := WhoRow{Role: "requester", PID: pid, Command: cmd(pid), Kind: "posix", Here: host.ProcessExists(pid),
			Call: "in casacore's request list (polls F_SETLK between its tries)"}
		r.State, r.Wchan = state(pid, 0)
		v.Rows = append(v.Rows, r)
		if !r.Here {
			v.Elsewhere = append(v.Elsewhere, fmt.Sprintf("casacore's request list names pid %d (host id %d), which is no process of %s: run `lockprobe who %s` on the other nodes that mount it",
				pid, rq.HostID, node, f.Path))
		}
	}
	for _, ob := range l.Observed {
		if ob.File != f || ob.Owner.Mode == semconv.ModeNone {
			continue
		}
		switch {
		case ob.Owner.PID > 0 && !host.ProcessExists(ob.Owner.PID):
			v.Elsewhere = append(v.Elsewhere, fmt.Sprintf("F_GETLK names pid %d as holder of a %s lock, which is no process of %s: run `lockprobe who %s` on the other nodes that mount it",
				ob.Owner.PID, ob.Owner.Mode, node, f.Path))
		case ob.Owner.PID == 0 && ob.Owner.Source == semconv.OwnerFromGetlk && !heldHere(l, f):
			v.Elsewhere = append(v.Elsewhere, fmt.Sprintf("F_GETLK says a %s lock on %s is held by pid 0, a process %s does not have (FUSE file systems such as GlusterFS say 0 for a holder of another node): run `lockprobe who %s` on the other nodes that mount it",
				ob.Owner.Mode, rangeText(ob.Owner.Start, ob.Owner.Len), node, f.Path))
		}
	}
	return v
}

func kindName(class string) string {
	return map[string]string{"POSIX": "posix", "OFDLCK": "ofd", "FLOCK": "flock"}[class]
}

func lenOf(e host.LockEntry) int64 {
	if e.End == host.EOF {
		return 0
	}
	return e.End - e.Start + 1
}

// WriteJSON writes the views as a JSON array.
func WriteJSON(w io.Writer, vs []WhoView) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(vs)
}

// WriteText writes the views as tables.
func WriteText(w io.Writer, vs []WhoView) error {
	for _, v := range vs {
		fmt.Fprintf(w, "%s on %s\n", v.File, v.Node)
		if len(v.Rows) == 0 {
			fmt.Fprintln(w, "  no process holds or waits for a lock on it")
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if len(v.Rows) > 0 {
			fmt.Fprintln(tw, "  \tpid\tkind\tmode\trange\tstate\tblocked by\tcommand")
		}
		for _, r := range v.Rows {
			rng := rangeText(r.Start, r.Len)
			if r.Role == "requester" {
				rng = "–" // the list names the process, not its request
			}
			by := "–"
			if r.BlockedBy != 0 {
				by = fmt.Sprint(r.BlockedBy)
			}
			st := r.State
			if r.Wchan != "" && r.Wchan != "0" {
				st += " " + r.Wchan
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Role, r.PID, r.Kind, r.Mode, rng, st, by, r.Command)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, e := range v.Elsewhere {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	return nil
}

// heldHere says whether /proc/locks shows a lock on f held on this node.
func heldHere(l *Look, f *File) bool {
	for _, h := range l.Holders([]*File{f}) {
		if h.File == f {
			return true
		}
	}
	return false
}

func rangeText(start, length int64) string {
	if length == 0 {
		return fmt.Sprintf("[%d, EOF)", start)
	}
	return fmt.Sprintf("[%d, %d)", start, start+length)
}
