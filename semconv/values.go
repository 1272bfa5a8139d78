package semconv

import (
	"fmt"
	"strings"
)

// The closed value sets of lock attributes are small numbers in the code and names in a trace,
// on the wire and in the scenario language (as the execution tracer's EventKind): a kind can
// never be passed where a mode is wanted, and a name is parsed once, where it comes in.

// valueSet is implemented by the empty types that name each set. The names are package
// variables: a slice literal in set() was made anew at each String(), which the lock thread
// calls for every attempt's attributes.
type valueSet interface {
	// set returns what the set is called in errors and its names, indexed by value; the zero
	// value's name may be "" (not given).
	set() (what string, names []string)
}

// Value is one value of a closed set.
type Value[S valueSet] uint8

// String returns the value's name as a trace writes it.
func (v Value[S]) String() string {
	var set S
	what, names := set.set()
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", what, uint8(v))
}

// Valid says whether v is a value of its set.
func (v Value[S]) Valid() bool {
	var set S
	_, names := set.set()
	return int(v) < len(names)
}

// MarshalText writes the name, so that JSON carries "posix" rather than 1.
func (v Value[S]) MarshalText() ([]byte, error) {
	var set S
	what, names := set.set()
	if int(v) >= len(names) {
		return nil, fmt.Errorf("%s %d has no name", what, uint8(v))
	}
	return []byte(names[v]), nil
}

// UnmarshalText reads a name; an unknown one is an error.
func (v *Value[S]) UnmarshalText(b []byte) error {
	p, err := parse[S](string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// parse reads a name of set S. The empty name is the zero value.
func parse[S valueSet](s string) (Value[S], error) {
	var set S
	what, names := set.set()
	for i, n := range names {
		if n == s {
			return Value[S](i), nil
		}
	}
	if s == "" {
		return 0, nil
	}
	var valid []string
	for _, n := range names {
		if n != "" {
			valid = append(valid, n)
		}
	}
	last := len(valid) - 1
	choices := strings.Join(valid[:last], ", ") + " or " + valid[last]
	if len(s) > MaxQuoted {
		// A value this long is none of the names; quoting it made a 4 KB "one-line" error.
		return 0, fmt.Errorf("%s of %d bytes is not %s", what, len(s), choices)
	}
	return 0, fmt.Errorf("%s %q is not %s", what, s, choices)
}

// Kind is a lock kind: which call takes the lock and who owns it.
type Kind = Value[kinds]

// Lock kinds.
const (
	KindUnset Kind = iota // not given: the locker's default
	KindPOSIX             // fcntl F_SETLK/F_SETLKW, owned by the process
	KindOFD               // F_OFD_SETLK/F_OFD_SETLKW, owned by the open file description
	KindFlock             // flock(2), owned by the open file description; the whole file
)

type kinds struct{}

var kindNames = []string{"", "posix", "ofd", "flock"}

func (kinds) set() (string, []string) { return "kind", kindNames }

// ParseKind reads a lock kind: posix, ofd or flock ("" is KindUnset).
func ParseKind(s string) (Kind, error) { return parse[kinds](s) }

// Mode is a lock mode.
type Mode = Value[modes]

// Lock modes. ModeNone, the zero value, is an unlock, or "nothing conflicts" in an owner.
const (
	ModeNone Mode = iota
	ModeRead
	ModeWrite
)

type modes struct{}

var modeNames = []string{"none", "read", "write"}

func (modes) set() (string, []string) { return "mode", modeNames }

// ParseMode reads a lock mode: read, write or none ("" is ModeNone).
func ParseMode(s string) (Mode, error) { return parse[modes](s) }

// Style is how an attempt acquires its lock.
type Style = Value[styles]

// Acquire styles.
const (
	StyleUnset Style = iota // not given: the locker's default
	StyleWait               // one blocking call (F_SETLKW, flock without LOCK_NB)
	StyleTry                // one non-blocking call
	StylePoll               // non-blocking calls at an interval (the seed harness's and casacore's way)
)

type styles struct{}

var styleNames = []string{"", "wait", "try", "poll"}

func (styles) set() (string, []string) { return "style", styleNames }

// ParseStyle reads an acquire style: wait, try or poll ("" is StyleUnset).
func ParseStyle(s string) (Style, error) { return parse[styles](s) }

// Outcome is how an attempt ended.
type Outcome = Value[outcomes]

// Attempt outcomes. OutcomeWaiting, the zero value, is the outcome of a partial record: the
// attempt has started and has no outcome yet.
const (
	OutcomeWaiting    Outcome = iota
	OutcomeGranted            // the lock call succeeded
	OutcomeWouldBlock         // EAGAIN or EACCES from a non-blocking call
	OutcomeDeadlock           // EDEADLK: the file system refused a request that would close a cycle
	OutcomeError              // any other errno
	OutcomeBlocked            // still waiting when the run ended
)

type outcomes struct{}

var outcomeNames = []string{"waiting", "granted", "would-block", "deadlock", "error", "blocked"}

func (outcomes) set() (string, []string) { return "outcome", outcomeNames }

// ParseOutcome reads an attempt outcome ("" is OutcomeWaiting).
func ParseOutcome(s string) (Outcome, error) { return parse[outcomes](s) }

// HoldEnd is how a hold ended.
type HoldEnd = Value[holdEnds]

// How a hold ended. HoldOpen, the zero value, is the end of a partial record: not ended yet.
const (
	HoldOpen      HoldEnd = iota
	HoldRelease           // explicit unlock
	HoldReleaseIf         // unlock because it was held
	HoldClose             // a descriptor of the file was closed
	HoldConverted         // replaced by a grant of another mode over its range
	HoldExit              // the process stopped or died while holding
	HoldRunEnd            // still held when the run ended
)

type holdEnds struct{}

var holdEndNames = []string{"open", "release", "releaseif", "close", "converted", "exit", "run-end"}

func (holdEnds) set() (string, []string) { return "hold end", holdEndNames }

// ParseHoldEnd reads how a hold ended ("" is HoldOpen).
func ParseHoldEnd(s string) (HoldEnd, error) { return parse[holdEnds](s) }

// OwnerClass says what a conflict owner is to the run.
type OwnerClass = Value[ownerClasses]

// Conflict owner classes. OwnerNone, the zero value, is "nothing conflicts".
const (
	OwnerNone    OwnerClass = iota
	OwnerLocker             // a locker of this run
	OwnerSelf               // the waiter itself
	OwnerForeign            // a pid that matches no locker
	OwnerUnknown            // the file system does not say, or the pid is ambiguous (OFD -1, NFSv4 0, NFSv3 svid)
)

type ownerClasses struct{}

var ownerClassNames = []string{"none", "locker", "self", "foreign", "unknown"}

func (ownerClasses) set() (string, []string) { return "owner class", ownerClassNames }

// ParseOwnerClass reads a conflict owner class ("" is OwnerNone).
func ParseOwnerClass(s string) (OwnerClass, error) { return parse[ownerClasses](s) }

// Where a conflict owner's answer came from (lock.owner.source). Not a closed set: a failed
// query is OwnerFromError followed by the errno's name ("getlk-error:ENOTCONN").
const (
	OwnerFromGetlk     = "getlk"        // F_GETLK or F_OFD_GETLK
	OwnerFromProcLocks = "proc-locks"   // /proc/locks (flock has no query call)
	OwnerFromFDInfo    = "fdinfo"       // /proc/PID/fdinfo lock lines (OFD locks name no pid)
	OwnerFromNone      = "none"         // nothing that counts as evidence was asked
	OwnerFromError     = "getlk-error:" // the query failed; the errno's name follows
)

// MaxQuoted is the longest piece of input an error quotes back, here and in the scenario
// parser: a 4 KB value once made a 4 KB "one-line" error. Every name is far shorter.
const MaxQuoted = 64
