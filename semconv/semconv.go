// Package semconv names everything lockprobe writes into a trace: span names, attribute keys, event
// names and the closed sets of values they take. The locker writes them, the controller adds to them,
// the analysis and the reports read them; keeping them in one leaf package keeps the three in step.
package semconv

// Span names.
const (
	SpanRun      = "lockprobe.run"      // root span, made by the controller
	SpanLocker   = "lockprobe.locker"   // one per locker process, child of the root
	SpanObserver = "lockprobe.observer" // one per observer process, child of the root
	SpanSnapshot = "lockprobe.snapshot" // the controller's end-of-run snapshot, child of the root
	SpanAcquire  = "lock.acquire"       // one lock attempt, from the call to its outcome
	SpanHold     = "lock.hold"          // grant → release
	SpanGetlk    = "lock.getlk"         // one explicit F_GETLK query (scenario command getlk)
	SpanCommand  = "lock.command"       // any other command (file, close, sleep, release that held nothing)
	SpanSilence  = "lockprobe.silence"  // an interval in which nothing arrived from a node (the controller's)
)

// Attributes of a lockprobe.silence span (besides locker.node).
const (
	SilenceHealed  = "silence.healed"  // bool: the node was heard again before the run ended
	SilenceLockers = "silence.lockers" // []int: the ids of the node's lockers
)

// Resource attributes (besides the OTel standard service.name, host.name, process.pid,
// process.executable.path).
const (
	ServiceName = "service.name"
	HostName    = "host.name"
	ProcessPID  = "process.pid"
	ProcessExec = "process.executable.path" // the binary a member runs: lockprobe, or its locker build

	LockerID   = "locker.id"   // int, run-unique 0..N-1; observers use -1-k
	LockerRole = "locker.role" // "locker" | "observer" | "controller"
	Node       = "locker.node" // the node the locker stands for: host name, or mount label in multi-mount runs

	FSType        = "fs.type"          // name from statfs magic (ext4, lustre, fuse, ...)
	FSMagic       = "fs.magic"         // int
	FSMountType   = "fs.mount.type"    // type from mountinfo, with subtype (fuse.glusterfs)
	FSMountPoint  = "fs.mount.point"   //
	FSMountSource = "fs.mount.source"  //
	FSMountOpts   = "fs.mount.options" // []string: all options
	FSLockOpts    = "fs.lock.options"  // []string: the options that decide locking
	OSKernel      = "os.kernel"        // uname release
	LustreVersion = "lustre.version"   //
	ToolVersion   = "lockprobe.version"
)

// GOMAXPROCS is an attribute of a member's span: the Ps its Go runtime ran the queue with
// (int), set when the queue came.
const GOMAXPROCS = "process.runtime.go.gomaxprocs"

// LockThreadNice is an attribute of a locker's span: the nice value its lock thread ran with
// (int; probe asks for -10, which needs CAP_SYS_NICE).
const LockThreadNice = "lockprobe.lock_thread.nice"

// Attributes of the root span.
const (
	RunCommand    = "lockprobe.command"  // the command line
	RunScenario   = "lockprobe.scenario" // scenario name or file
	RunScenarioTx = "lockprobe.scenario.text"
	RunProcs      = "lockprobe.procs"
	RunTimeout    = "lockprobe.timeout_ns"
	RunPoll       = "lockprobe.poll_ns"
	RunStartNS    = "lockprobe.start_unix_ns" // the scenario's start instant (controller clock)
	RunEndReason  = "lockprobe.end_reason"    // "done" | "timeout" | "hang" | "interrupted"
	RunLost       = "lockprobe.messages_lost"
	RunLauncher   = "lockprobe.launcher" // local | slurm | ssh
	RunDelivery   = "lockprobe.delivery" // how the binary reached the nodes, in words
	RunNodes      = "lockprobe.nodes"    // []string: the nodes of a run across a cluster, in order
	RunTracer     = "lockprobe.tracer"   // exec and watch: how the program's lock calls were seen (ptrace, ebpf, sampled)
	RunKilled     = "lockprobe.killed"   // []string: exec: the processes lockprobe killed at the run's end ("pid N (command)")
	Verdict       = "lock.verdict"       // class of the verdict, searchable in Jaeger
	VerdictExit   = "lock.verdict.exit"
	VerdictText   = "lock.verdict.summary"
)

// Attributes of lock spans.
const (
	LockKind      = "lock.kind"  // Kind values
	LockMode      = "lock.mode"  // Mode values
	LockStart     = "lock.start" // int
	LockLen       = "lock.len"   // int, 0 = to EOF
	LockStyle     = "lock.style" // Style values
	LockOutcome   = "lock.outcome"
	LockErrno     = "lock.errno"      // string, e.g. "EAGAIN"; empty when none
	LockTries     = "lock.tries"      // int: F_SETLK calls made (poll/try)
	LockFD        = "lock.fd"         // int: the scenario's descriptor slot
	LockHoldEnd   = "lock.hold.end"   // HoldEnd values
	LockCmdLine   = "lock.cmd.line"   // int: scenario line the command came from
	LockCmdText   = "lock.cmd.text"   // the command as written
	LockCmdIndex  = "lock.cmd.index"  // int: position in the locker's queue
	LockScheduled = "lock.scheduled"  // int unix ns: the instant an "@" command was scheduled for
	LockAcquireID = "lock.acquire.id" // on a hold: span id (hex) of the attempt that granted it
	FilePath      = "file.path"
	FileLogical   = "file.logical"        // the scenario's name for the file ({file}, {file}.2): one file across mounts
	LockClosedFD  = "lock.hold.closed_fd" // int: on a hold ended by close, the slot that was closed
	FileDev       = "file.dev"            // "major:minor"
	FileInode     = "file.inode"          // int
)

// Span events and their attributes.
const (
	EventConflict = "lock.conflict" // the waiter's own F_GETLK answer changed
	EventTry      = "lock.try"      // one F_SETLK of a poll/try attempt failed
	EventObserved = "lock.observed" // the observer's F_GETLK answer changed
	EventClock    = "clock.sync"    // a (re-)measured clock offset
	EventExit     = "locker.exit"   // the controller saw a locker process end
	EventState    = "locker.state"  // snapshot: one locker's process state
	EventProcLock = "proc.lock"     // snapshot: one /proc/locks line of the run's file
	EventVerdict  = "lock.verdict"  // the verdict, on the root span
	EventFire     = "lockprobe.fire"

	LockOwnerPID      = "lock.owner.pid"       // int: l_pid as the file system reported it
	LockOwnerMode     = "lock.owner.mode"      // Mode values
	LockOwnerStart    = "lock.owner.start"     // int
	LockOwnerLen      = "lock.owner.len"       // int
	LockOwnerLockerID = "lock.owner.locker.id" // int, -1 when it maps to no locker
	LockOwnerClass    = "lock.owner.class"     // OwnerClass values
	LockOwnerSource   = "lock.owner.source"    // OwnerFrom values
	QueryMode         = "lock.query.mode"      // observer: the mode it asked F_GETLK about

	ClockOffset      = "clock.offset_ns"      // int: controller − locker
	ClockUncertainty = "clock.uncertainty_ns" // int: half the best round trip

	ExitStatus  = "process.exit.status" // string, as os.ProcessState says
	ExitSignal  = "process.exit.signal" // string, empty when not signalled
	ExitGoodbye = "locker.exit.goodbye" // bool: it said goodbye (sent all it had) before it ended
	// ClosedBy marks a record the controller wrote for a span its locker never ended (the
	// locker died, or the run ended first): its end is the controller's instant, not the locker's.
	ClosedBy   = "lockprobe.closed_by"
	ExitUnsent = "locker.exit.unsent" // int: records it still had queued, never delivered (at least)
	// ExitUndelivered counts the controller's messages to the member that could not even be
	// queued: it was not reading (wire.ErrNotReading).
	ExitUndelivered = "locker.exit.undelivered" // int

	ProcCommandLine = "process.command_line" // a real program's argv, joined by spaces (OTel's name)
	ProcParentPID   = "process.parent_pid"   // int: the process that forked it
	ProcSyscall     = "process.syscall"      // snapshot: the call a thread is in, as /proc/PID/syscall decodes
	LockRechecks    = "lock.hold.rechecks"   // int: granted calls that re-took a held lock unchanged (casacore re-checks on every access)
	LockOwnerLocal  = "lock.owner.local"     // bool as int: 0 when the owner's pid is no process of this node

	ProcState  = "process.state" // one letter, as /proc/PID/stat
	ProcWchan  = "process.wchan"
	ProcStack  = "process.stack"     // []string
	ProcTID    = "process.tid"       // int: the thread that makes the lock calls
	ProcInfl   = "lock.inflight"     // description of the attempt in flight, if any
	ProcLockID = "proc.lock.id"      // int
	ProcLockBy = "proc.lock.blocker" // int: id of the line it waits behind, 0 if it holds
	ProcLockCl = "proc.lock.class"   // POSIX | OFDLCK | FLOCK
	ProcLockRW = "proc.lock.mode"    // READ | WRITE
	ProcLockPI = "proc.lock.pid"     // int
	ProcLockSt = "proc.lock.start"   // int
	ProcLockEn = "proc.lock.end"     // int, -1 = EOF
	ProcLockRa = "proc.lock.raw"     // the line as read
	FireIndex  = "lockprobe.fire.at" // int unix ns: the shared scheduled instant
	FireSpread = "lockprobe.fire.spread_ns"
	FireCount  = "lockprobe.fire.count"
)

// The simfs lock table in the snapshot (simfs/locktable): one event per lock or request, and
// one per thing the server did (a fault acting, an eviction) at the instant it did it.
const (
	EventSimfsLock  = "simfs.lock"
	EventSimfsEvent = "simfs.event"
	SimfsLockID     = "simfs.lock.id"
	SimfsState      = "simfs.lock.state" // granted | waiting | undelivered | delayed | ghost
	SimfsNode       = "simfs.node"       // the mount's node index
	SimfsKind       = "simfs.lock.kind"  // fcntl | flock
	SimfsEnd        = "simfs.lock.end"   // inclusive, -1 = EOF
	SimfsGranted    = "simfs.lock.granted_at"
	SimfsEnqueued   = "simfs.lock.enqueued_at"
	SimfsBlockedBy  = "simfs.lock.blocked_by"
	SimfsWhat       = "simfs.event.what"
	SimfsMode       = "simfs.mode"
)
