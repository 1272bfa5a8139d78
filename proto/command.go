package proto

import (
	"fmt"
	"strings"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
)

// Op is what a queued command does.
type Op uint8

// The command words of the seed harness, extended.
const (
	OpFile      Op = iota + 1 // open a file read-write (create if missing) into a descriptor slot
	OpLock                    // read / write, optionally at an instant
	OpRelease                 // unlock whether held or not
	OpReleaseIf               // unlock only if held
	OpSleep                   // sleep for a duration
	OpGetlk                   // record what F_GETLK says now
	OpClose                   // close a descriptor slot
	OpStop                    // flush and exit
)

var opNames = [...]string{
	OpFile: "file", OpLock: "lock", OpRelease: "release", OpReleaseIf: "releaseif",
	OpSleep: "sleep", OpGetlk: "getlk", OpClose: "close", OpStop: "stop",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Command is one entry of a locker's queue. Zero fields take the locker's defaults where that
// makes sense (Kind, Style); the scenario parser fills what the text says.
type Command struct {
	Op   Op     `json:"op"`
	Line int    `json:"line,omitempty"` // scenario line, for evidence and errors
	Text string `json:"text,omitempty"` // the command as written

	// At schedules the command: when HasAt, it fires at the scenario start + After, or at Abs
	// when Abs is not zero (RFC 3339 in the scenario). Both on the controller's clock.
	HasAt bool          `json:"has_at,omitempty"`
	After time.Duration `json:"after,omitempty"`
	Abs   time.Time     `json:"abs,omitempty"`

	Mode     semconv.Mode  `json:"mode,omitempty"`  // read | write (lock, getlk)
	Kind     semconv.Kind  `json:"kind,omitempty"`  // posix | ofd | flock (unset = locker default)
	Style    semconv.Style `json:"style,omitempty"` // wait | try | poll (unset = locker default)
	Tries    int           `json:"tries,omitempty"` // poll: number of F_SETLK calls
	Interval time.Duration `json:"interval,omitempty"`
	Start    int64         `json:"start,omitempty"`
	Len      int64         `json:"len,omitempty"` // 0 = to EOF
	FD       int           `json:"fd,omitempty"`  // descriptor slot
	Path     string        `json:"path,omitempty"`
	Duration time.Duration `json:"duration,omitempty"` // sleep
}

// Validate reports a command the locker could not execute.
func (c *Command) Validate() error {
	switch c.Op {
	case OpFile:
		if c.Path == "" {
			return fmt.Errorf("file: empty path")
		}
	case OpLock, OpGetlk:
		if c.Mode != semconv.ModeRead && c.Mode != semconv.ModeWrite {
			return fmt.Errorf("%s: mode %q is not read or write", c.Op, c.Mode)
		}
	case OpRelease, OpReleaseIf, OpSleep, OpClose, OpStop:
	default:
		return fmt.Errorf("unknown op %d", c.Op)
	}
	if !c.Kind.Valid() {
		return fmt.Errorf("unknown lock kind %s", c.Kind)
	}
	if !c.Style.Valid() {
		return fmt.Errorf("unknown style %s", c.Style)
	}
	if c.Start < 0 || c.Len < 0 || c.FD < 0 || c.FD > 63 || c.Tries < 0 || c.Interval < 0 || c.Duration < 0 {
		return fmt.Errorf("%s: negative or out-of-range field", c.Op)
	}
	return nil
}

// String renders the command in the scenario language; the parser reads it back.
func (c Command) String() string {
	var b strings.Builder
	switch c.Op {
	case OpLock:
		b.WriteString(c.Mode.String())
	case OpFile:
		b.WriteString("file@" + c.Path)
	case OpSleep:
		b.WriteString("sleep " + c.Duration.String())
	default:
		b.WriteString(c.Op.String())
	}
	if c.HasAt {
		if !c.Abs.IsZero() {
			b.WriteString("@" + c.Abs.Format(time.RFC3339Nano))
		} else {
			b.WriteString("@+" + c.After.String())
		}
	}
	if c.Op == OpGetlk {
		b.WriteString(" mode=" + c.Mode.String())
	}
	if c.Kind != semconv.KindUnset {
		b.WriteString(" kind=" + c.Kind.String())
	}
	if c.Style != semconv.StyleUnset {
		b.WriteString(" style=" + c.Style.String())
	}
	if c.Tries != 0 {
		fmt.Fprintf(&b, " tries=%d", c.Tries)
	}
	if c.Interval != 0 {
		b.WriteString(" interval=" + c.Interval.String())
	}
	if c.Start != 0 || c.Len != 0 {
		fmt.Fprintf(&b, " range=%d:%d", c.Start, c.Len)
	}
	if c.FD != 0 {
		fmt.Fprintf(&b, " fd=%d", c.FD)
	}
	return b.String()
}
