package analysis

import (
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// Findings and their evidence carry data only; the reports say them in words (one place for
// every sentence lockprobe writes). The types below are what a finding or a piece of evidence
// can say. Each is comparable, so that the same fact seen twice is kept once.

// Party is someone a finding names: a locker, the observer of a node, or a lock owner that is
// no locker of the run.
type Party struct {
	Locker   int64              // the locker's id; -1 when the party is no locker
	Observer bool               // the observer on Node
	Mount    bool               // the mount options of Node
	Silence  bool               // the controller, which heard nothing from Node
	Class    semconv.OwnerClass // a party that is no locker: foreign or unknown, by PID on Node
	PID      int64
	Node     string
}

// lockerParty names locker id.
func lockerParty(id int64) Party { return Party{Locker: id} }

// observerParty names the observer of node.
func observerParty(node string) Party { return Party{Locker: -1, Observer: true, Node: node} }

// Lock is a lock a finding or a piece of evidence speaks of: what was asked for or held, on
// which file.
type Lock struct {
	lockmodel.Request
	File string // the scenario's name of the file (file.logical): one file across mounts
	Path string // the path the locker opened it by
}

// lockOf is the lock of an attempt.
func (a *Attempt) lock() Lock { return Lock{Request: a.Request, File: a.File, Path: a.Path} }

// lockOf is the lock of a hold.
func (h *Hold) lock() Lock { return Lock{Request: h.Request, File: h.File, Path: h.Path} }

// Fact is what one piece of evidence shows.
type Fact interface{ fact() }

// Answered: the waiter's own F_GETLK (or /proc/locks, for flock) named Owner. Again: the answer
// came after the owner's lock had ended. InCycle: said of a member of a deadlock.
type Answered struct {
	Owner   Owner
	Again   bool
	InCycle bool
}

// Observed: an observer's F_GETLK over the whole file, for a Query request, named Owner. Again:
// the answer came after the owner's lock had ended.
type Observed struct {
	Query string
	Owner Owner
	Again bool
}

// LockEnded: the party's lock ended, How.
type LockEnded struct {
	Lock Lock
	How  semconv.HoldEnd
}

// Refused: the lock call returned Errno after Took ns.
type Refused struct {
	Errno string
	Took  int64
}

// WaitsFor: the party waits for To, wanting Want; Seen names the evidence of the wait-for
// graph's edge ("getlk+trace"). InChain: said of a link of a chain of waits, not of a cycle.
type WaitsFor struct {
	To      Party
	Want    Lock
	Seen    string
	InChain bool
}

// Granted: the party was granted Lock, held until its end How (Open: until the end of the run).
type Granted struct {
	Lock Lock
	How  semconv.HoldEnd
	Open bool
}

// Asked is the F_GETLK whose failure a ClientFailed reports.
type Asked uint8

// What F_GETLK failed.
const (
	AskedObserver   Asked = iota // the observer's, over the whole file for a Query request
	AskedOwnRequest              // a waiter's watcher, for its own request
	AskedScenario                // a getlk command of the scenario
)

// ClientFailed: an F_GETLK on Node failed with Errno: the client could not reach the file system.
type ClientFailed struct {
	Asked Asked
	Query string
	Errno string
	Node  string
}

// Converting: the party was waiting to convert its read lock to Want when To was granted its
// ToMode lock.
type Converting struct {
	Want   Lock
	To     int64
	ToMode semconv.Mode
}

// NodeLocalLocks: the file system, FS, arbitrates locks on each node and none across nodes.
type NodeLocalLocks struct{ FS string }

// InState: the party's process was, in the end-of-run snapshot, in State (a /proc state letter),
// waiting in Wchan, with Inflight the attempt in flight ("" when in no lock call) and Stack its
// kernel stack, innermost first, joined with " < ".
type InState struct {
	State, Wchan, Inflight, Stack string
}

// PollFailed: Tries non-blocking tries of the same request failed (Errno) over Took ns before
// the party waited.
type PollFailed struct {
	Tries int64
	Errno string
	Took  int64
}

// ClosedSlot: the party closed descriptor slot Slot of the file of Lock, which it had taken
// through LockSlot.
type ClosedSlot struct {
	Slot, LockSlot int64
	Lock           Lock
}

func (Answered) fact()       {}
func (Observed) fact()       {}
func (LockEnded) fact()      {}
func (Refused) fact()        {}
func (WaitsFor) fact()       {}
func (Granted) fact()        {}
func (ClientFailed) fact()   {}
func (Converting) fact()     {}
func (ClosedSlot) fact()     {}
func (NodeLocalLocks) fact() {}
func (InState) fact()        {}
func (PollFailed) fact()     {}

// Detail is what a finding says beyond its class, the locks and lockers it names.
type Detail interface{ detail() }

// NobodyHolds (lost wake-up): Waiter has waited Waited for the finding's lock, which by its own
// F_GETLK nobody holds.
type NobodyHolds struct{ Waiter, Waited int64 }

// HoldsItself (lost callback): Waiter has waited Waited for the finding's lock, which by F_GETLK
// it holds already: by its own F_GETLK, or by the observer on Observer when that is not empty.
type HoldsItself struct {
	Waiter, Waited int64
	Observer       string
}

// NamedHolder (lost callback): Waiter is still waiting for the finding's lock, which the
// F_GETLK of locker Asker names it as holder of.
type NamedHolder struct{ Waiter, Asker int64 }

// ForeignOwner (foreign holder): Waiter has waited Waited for the finding's lock, held by Owner,
// which is no locker of the run. AtEnd: it was still waiting at the end, at the end of a chain
// of waits. Remote: the pid is no process of the answering node (Owner.Node), whose file system
// shares the file with other nodes: the holder runs on one of those.
type ForeignOwner struct {
	Waiter, Waited int64
	Owner          Party
	AtEnd          bool
	Remote         bool
}

// StaleOwner (stale holder): Waiter has waited Waited for the finding's lock behind locker
// Owner, which the file system still names as holder. NeverGranted: the owner was never
// granted such a lock. Otherwise its lock ended How, Since ns before the finding's end, or its
// process exited (Exited, with ExitStatus).
type StaleOwner struct {
	Waiter, Waited, Owner int64
	NeverGranted          bool
	How                   semconv.HoldEnd
	Exited                bool
	ExitStatus            string
	Since                 int64
}

// Refusal (fs-detected deadlock): Requester asked for the finding's lock and the file system
// refused it with EDEADLK; With are the other lockers of the cycle it would have closed. Polled,
// when not nil, is the failed polling of the same request before the wait (casacore's way): the
// stall the user saw is the finding's whole duration.
type Refusal struct {
	Requester int64
	With      []int64
	Polled    *PollFailed
}

// Member is one locker of a deadlock: what it wants, and the owners it waits for in the cycle.
type Member struct {
	Locker int64
	Want   Lock
	Owners []Party
}

// Cycle (deadlock): the members wait for each other over Files files. Broken, when not nil,
// says what broke the cycle.
type Cycle struct {
	Members []Member
	Files   int
	Broken  *Break
}

// Break is how a cycle ended: locker Locker's attempt ended Outcome.
type Break struct {
	Locker  int64
	Outcome semconv.Outcome
}

// Overlap (exclusion violated): lockers Holders both held conflicting locks on Range of the
// finding's file. Lost, when not nil, says whose client failed; Converting, whose read lock the
// file system dropped during a blocked conversion; NodeLocal, that the mount option makes locks
// node-local and the holders are on two nodes.
type Overlap struct {
	Holders    [2]int64
	Range      lockmodel.Request
	Lost       *LostClient
	NodeLocal  *NodeLocality
	Converting *Conversion
	Partition  *Partitioned
}

// NodeLocality: the mount option Option makes locks node-local, and the holders are on Nodes.
type NodeLocality struct {
	Option string
	Nodes  [2]string
}

// LostClient: the client of Locker on Node failed with Errno (Conn: it lost its connection to
// the file system) and the file system gave the lock to Other.
type LostClient struct {
	Locker int64
	Node   string
	Errno  string
	Conn   bool
	Other  int64
}

// Conversion: Reader was blocked converting its read lock to write when Writer got its write lock.
type Conversion struct{ Reader, Writer int64 }

// ImplicitRelease (implicit release): Locker lost its posix lock (the finding's lock) when it
// closed descriptor slot Slot of the file.
type ImplicitRelease struct{ Locker, Slot int64 }

// IdleHolder (idle holder): Waiter, a program's process, has waited Waited for the finding's
// lock; the chain of waits ends at Holder, which holds it and waits for no lock. Doing is what
// the snapshot saw it do, when Known.
type IdleHolder struct {
	Waiter, Waited, Holder int64
	Doing                  InState
	Known                  bool
}

// LongHold (long hold): Waiter was still waiting at the end, after Waited, for the finding's
// lock; the chain of waits ends at Holder, which holds it and waits for nothing.
type LongHold struct{ Waiter, Waited, Holder int64 }

func (NobodyHolds) detail()     {}
func (HoldsItself) detail()     {}
func (NamedHolder) detail()     {}
func (ForeignOwner) detail()    {}
func (StaleOwner) detail()      {}
func (Refusal) detail()         {}
func (Cycle) detail()           {}
func (Overlap) detail()         {}
func (ImplicitRelease) detail() {}
func (LongHold) detail()        {}
func (IdleHolder) detail()      {}
