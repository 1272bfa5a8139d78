package simfs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FaultKind is what a fault does.
type FaultKind int

// The faults.
const (
	// FaultDropGrant: the manager grants a waiting request and records the holder, but the
	// completion never reaches the waiter, which stays in request_wait_answer while F_GETLK
	// elsewhere names it as holder: the lost lock callback.
	FaultDropGrant FaultKind = iota
	// FaultDelayGrant: the completion reaches the waiter only after Delay.
	FaultDelayGrant
	// FaultGhost: an unlock is acknowledged but the lock stays on the server, also past close
	// and exit (LU-12828), until its node is evicted.
	FaultGhost
	// FaultEvict: the node's locks vanish and its blocked waiters get EIO, as on client
	// eviction; lock calls on files it opened before fail with EIO.
	FaultEvict
	// FaultNoDeadlockDetect: requests that would close a cycle wait instead of failing EDEADLK.
	FaultNoDeadlockDetect
	// FaultFirstBlockerOnly: deadlock detection follows only each waiter's first conflicting
	// lock (LU-13991). It is the default (Options.Detect); as a fault it narrows DetectAll to
	// one node or a time.
	FaultFirstBlockerOnly
)

var faultNames = [...]string{
	FaultDropGrant: "drop-grant", FaultDelayGrant: "delay-grant", FaultGhost: "ghost", FaultEvict: "evict",
	FaultNoDeadlockDetect: "no-deadlock-detect", FaultFirstBlockerOnly: "first-blocker-only",
}

func (k FaultKind) String() string {
	if k < 0 || int(k) >= len(faultNames) {
		return fmt.Sprintf("FaultKind(%d)", int(k))
	}
	return faultNames[k]
}

// Trigger is an event that sets a fault off.
type Trigger int

// The triggers.
const (
	// TriggerNone: the fault acts on every matching request once After has passed.
	TriggerNone Trigger = iota
	// TriggerBlock: (evict) a request of another node blocks behind one of the node's locks.
	TriggerBlock
)

var triggerNames = [...]string{TriggerNone: "", TriggerBlock: "block"}

func (t Trigger) String() string {
	if t < 0 || int(t) >= len(triggerNames) {
		return fmt.Sprintf("Trigger(%d)", int(t))
	}
	return triggerNames[t]
}

// AnyNode is a fault's Node when it applies to every node.
const AnyNode = -1

// Fault is one -fault KIND[:key=value,...], parsed once (ParseFault).
type Fault struct {
	Kind FaultKind
	// Node is the requester's node the fault applies to (the evicted node for evict), or AnyNode.
	Node int
	// After: the fault acts only once this long has passed since the first lock request simfs
	// served (since the trigger, when there is one); evict fires then.
	After time.Duration
	// On is the trigger (evict only).
	On Trigger
	// Delay is delay-grant's delay.
	Delay time.Duration
	// Count is how many times the fault acts; 0 means every time (evict acts once).
	Count int
}

// faultKeys says which keys each kind takes.
var faultKeys = map[FaultKind][]string{
	FaultDropGrant:        {"node", "after", "count"},
	FaultDelayGrant:       {"node", "after", "count", "d"},
	FaultGhost:            {"node", "after", "count"},
	FaultEvict:            {"node", "after", "on"},
	FaultNoDeadlockDetect: {"node", "after"},
	FaultFirstBlockerOnly: {"node", "after"},
}

// ParseFault reads KIND[:key=value,...] (also delay-grant=D). The error is one line naming what
// was wrong.
func ParseFault(spec string) (Fault, error) {
	f := Fault{Node: AnyNode}
	name, rest, hasKeys := strings.Cut(spec, ":")
	if n, d, ok := strings.Cut(name, "="); ok && n == FaultDelayGrant.String() {
		name, rest, hasKeys = n, "d="+d+","+rest, true
		rest = strings.TrimSuffix(rest, ",")
	}
	kind := -1
	for i, n := range faultNames {
		if name == n {
			kind = i
		}
	}
	if kind < 0 {
		return f, fmt.Errorf("fault %q: unknown kind %q (want %s)", spec, name, strings.Join(faultNames[:], ", "))
	}
	f.Kind = FaultKind(kind)
	seen := map[string]bool{}
	if hasKeys {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || v == "" {
				return f, fmt.Errorf("fault %q: %q is not key=value", spec, kv)
			}
			if !allowed(faultKeys[f.Kind], k) {
				return f, fmt.Errorf("fault %q: %s takes no %q (it takes %s)", spec, f.Kind, k, strings.Join(faultKeys[f.Kind], ", "))
			}
			if seen[k] {
				return f, fmt.Errorf("fault %q: %s given twice", spec, k)
			}
			seen[k] = true
			if err := f.set(k, v); err != nil {
				return f, fmt.Errorf("fault %q: %v", spec, err)
			}
		}
	}
	switch {
	case f.Kind == FaultDelayGrant && f.Delay <= 0:
		return f, fmt.Errorf("fault %q: delay-grant needs d=DURATION (above 0)", spec)
	case f.Kind == FaultEvict && f.Node == AnyNode:
		return f, fmt.Errorf("fault %q: evict needs node=N", spec)
	case f.Kind == FaultEvict && f.On == TriggerNone && !seen["after"]:
		return f, fmt.Errorf("fault %q: evict needs after=DURATION or on=block", spec)
	}
	return f, nil
}

func (f *Fault) set(k, v string) error {
	switch k {
	case "node", "count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s=%q is not a number of 0 or more", k, v)
		}
		if k == "node" {
			f.Node = n
		} else {
			f.Count = n
		}
	case "after", "d":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%s=%q is not a duration of 0 or more (e.g. 2s)", k, v)
		}
		if k == "after" {
			f.After = d
		} else {
			f.Delay = d
		}
	case "on":
		if v != TriggerBlock.String() {
			return fmt.Errorf("on=%q: unknown trigger (want block)", v)
		}
		f.On = TriggerBlock
	}
	return nil
}

func allowed(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// String gives the fault back in the form ParseFault reads.
func (f Fault) String() string {
	var kv []string
	if f.Node != AnyNode {
		kv = append(kv, "node="+strconv.Itoa(f.Node))
	}
	if f.On != TriggerNone {
		kv = append(kv, "on="+f.On.String())
	}
	// An evict without a trigger fires at After, so after=0 (at the first lock request) is its
	// meaning, not a default to leave out.
	if f.After > 0 || (f.Kind == FaultEvict && f.On == TriggerNone) {
		kv = append(kv, "after="+f.After.String())
	}
	if f.Delay > 0 {
		kv = append(kv, "d="+f.Delay.String())
	}
	if f.Count > 0 {
		kv = append(kv, "count="+strconv.Itoa(f.Count))
	}
	if len(kv) == 0 {
		return f.Kind.String()
	}
	return f.Kind.String() + ":" + strings.Join(kv, ",")
}
