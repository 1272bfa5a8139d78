// Package scenario is lockprobe's command language: the seed harness's command words, extended,
// parsed into per-locker queues of proto.Command.
//
// A scenario is a text file (built-ins end in .lps). Each line holds one header setting or one
// command; commands are queued per locker in file order. A '#' at the start of a word starts a
// comment that runs to the end of the line; the first comment of the form
//
//	# description: one line
//
// is the scenario's description (lockprobe scenarios lists it).
//
// # Header
//
// Header lines come before the first command and set defaults that command-line flags override;
// each may appear once:
//
//	procs 4           number of lockers (1-65536)
//	timeout 30s       run timeout (a Go duration, more than zero)
//	kind posix        lock kind: posix | ofd | flock
//	style wait        acquire style: wait | try | poll
//	tries 5           poll: F_SETLK calls per attempt (needs "style poll" above it)
//	interval 200ms    poll: pause between tries (needs "style poll" above it)
//
// # Commands
//
//	[TARGETS:] WORD[@WHEN] [key=value ...]
//
// TARGETS say which lockers run the command: "all" (the default when the prefix is left out),
// a locker number N, a range N-M, or a list of those such as 0,2-4. {last} stands for the last
// locker (procs-1) and is the way to say "all but locker 0": 1-{last}. A range N-{last} is
// empty when N is past the last locker, so scenarios written that way run with any number of
// lockers; any other target that names a locker >= procs is an error when queues are expanded,
// and so is naming a locker twice in one list. node=K (or node=K-M) names the lockers on node
// K: with several -file, the lockers of the K-th file (locker i uses file i % files); with a
// launcher, the K-th node of the run, where lockprobe -spread placed them. It may stand in a
// list beside locker numbers (0,node=2:), and names no locker when node K has none; a node past
// the last is an error. The space after the colon may be left out (0:read).
//
// WHEN schedules a command: +DURATION is a Go duration after the scenario's start instant,
// which all lockers share (+1s, +1.5s, +450us); an RFC 3339 time (2025-01-02T03:04:05.5Z) is an
// absolute instant, and so is the seed harness's YYYY-MM-DD HH:MM:SS in UTC, space and all
// (write@2026-12-01 21:30:00, a fraction of a second may follow). All are on the controller's
// clock. A command without WHEN runs as soon as the one before it in the locker's queue is done.
//
// The words:
//
//	file@PATH [fd=K]            open PATH read-write (created if missing) into descriptor slot K (0)
//	read[@WHEN] [opts]          take a read lock
//	write[@WHEN] [opts]         take a write lock
//	release[@WHEN] [opts]       unlock, whether held or not
//	releaseif[@WHEN] [opts]     unlock only if held
//	getlk[@WHEN] [opts]         record what F_GETLK says now: the conflicting owner, or none
//	sleep DURATION              pause (a Go duration); the seed's sleep@N counts microseconds
//	close[@WHEN] [fd=K]         close a descriptor slot (for posix this drops all of the
//	                            process's locks on that file)
//	stop[@WHEN]                 flush and exit
//
// Options, each at most once, and only on the words that take them:
//
//	kind=posix|ofd|flock        read write release releaseif getlk (not flock for getlk)
//	style=wait|try|poll         read write
//	tries=N interval=DURATION   read write; need style=poll (on the command or in the header)
//	range=START:LEN             read write release releaseif getlk; LEN 0 = to the end of the
//	                            file; not with kind=flock, which locks whole files
//	fd=K                        all but sleep and stop; K from 0 to 63
//	mode=read|write             getlk: the lock to ask about (default write)
//
// Options left out take the locker's defaults (the flags, else the header, else lockprobe's
// own). A locker's queue that does not end with stop gets no implicit one (the controller stops
// idle lockers), but a command after a locker's stop is an error.
//
// # Templates
//
// Some values differ per locker and are filled in when queues are expanded:
//
//	{file}   the locker's file: locker i gets files[i % len(files)]; a suffix names a second
//	         file: file@{file}.2 fd=1
//	{id}     the locker's id, 0..procs-1
//	{next}   (id+1) % procs, the next locker in a ring
//	{last}   procs-1
//
// {file}, {id}, {next} and {last} may appear in a file@ path; {id}, {next} and {last} may stand
// for the START or LEN of a range (range={id}:1); {last} may stand for a target. A '{' in a path
// must start one of these words. Paths cannot contain spaces.
//
// # Repeat blocks
//
//	repeat N {
//	all: write style=wait
//	all: release
//	}
//
// queues the lines inside N times, in order, as if they had been written out (blocks nest; the
// unrolled scenario may hold at most ParseOptions.MaxCommands statements). The repeated commands
// keep the line numbers of the block's lines.
//
// # Errors
//
// Every problem is reported as one line "name:line:col: what is wrong" (an *Error), the column
// counting bytes from 1 and pointing at the offending word: unknown words and options, bad or
// negative numbers and durations, duplicate options or header lines, options on words that do
// not take them, tries or interval without poll, header lines after commands, unbalanced repeat
// blocks, and, when queues are expanded, targets beyond procs and commands after stop.
//
// # Built-ins
//
// Builtins lists them and Builtin parses one; their sources are under builtin/ in this package.
// DefaultBuiltin (contend) is the seed harness's experiment: every locker asks for a write lock at
// the same instant and releases it.
package scenario
