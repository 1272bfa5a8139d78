// Package lockmodel is what lockprobe knows of locks, whoever recorded the facts: which requests
// exclude each other on a given file system (Semantics.Conflict), which process a pid reported
// as a lock's owner names (Processes.Owner), and the defaults of lock commands. The locker, the
// analysis and the reports all decide these questions here, so that they cannot disagree.
//
// It is a leaf below everything but semconv, whose value sets (kind, mode, owner class) it uses.
package lockmodel

import (
	"time"

	"github.com/lockprobe/lockprobe/semconv"
)

// EOF is the end of a range that runs to the end of the file (a length of 0).
const EOF = int64(1<<63 - 1)

// Request is a lock as asked for or as held: its kind, its mode and its byte range.
type Request struct {
	Kind  semconv.Kind
	Mode  semconv.Mode
	Start int64
	Len   int64 // 0: to the end of the file
}

// To returns the exclusive end of the request's range: EOF for a length of 0 and for flock,
// which locks the whole file.
func (r Request) To() int64 {
	if r.Len <= 0 || r.Kind == semconv.KindFlock {
		return EOF
	}
	return r.Start + r.Len
}

// From returns the first byte of the request's range: 0 for flock.
func (r Request) From() int64 {
	if r.Kind == semconv.KindFlock {
		return 0
	}
	return r.Start
}

// Overlaps reports whether two requests' ranges share a byte.
func (r Request) Overlaps(o Request) bool {
	return r.From() < o.To() && o.From() < r.To()
}

// Semantics is how a file system arbitrates locks. The zero value is a local Linux file
// system's.
type Semantics struct {
	// FlockWithFcntl says flock(2) and fcntl locks live in one table, a flock lock covering the
	// whole file: Lustre mounted -o flock (one LDLM resource per file), GlusterFS (the client
	// turns flock into a whole-file posix lock on the brick), NFS (flock emulated with whole-file
	// fcntl locks). On a local Linux file system the two never conflict.
	FlockWithFcntl bool
}

// Local is a local Linux file system's semantics.
var Local = Semantics{}

// Conflict reports whether two requests on one file, of two different owners, exclude each
// other: both lock, at least one writes, their ranges overlap, and the file system keeps both
// kinds in one table (POSIX and OFD locks always share one).
func (s Semantics) Conflict(a, b Request) bool {
	if a.Mode == semconv.ModeNone || b.Mode == semconv.ModeNone {
		return false
	}
	if a.Mode != semconv.ModeWrite && b.Mode != semconv.ModeWrite {
		return false
	}
	if (a.Kind == semconv.KindFlock) != (b.Kind == semconv.KindFlock) && !s.FlockWithFcntl {
		return false
	}
	return a.Overlaps(b)
}

// KernelArbitrated says whether this host's kernel arbitrates the locks of a file on a file
// system of that type (the statfs magic's name, host.FSInfo.MagicName): a local one. Then
// /proc/locks shows every holder, and the kernel hands a dead process's locks on while the
// process dies — before its parent can reap it. On FUSE, NFS, Lustre and other remote file
// systems a server decides, and /proc/locks shows nothing of other nodes.
func KernelArbitrated(fsType string) bool {
	switch fsType {
	case "ext2/ext3/ext4", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "overlayfs", "reiserfs", "jfs", "bcachefs":
		return true
	}
	return false
}

// Defaults of lock commands and of watching them: what a command, a scenario header, a flag or
// a protocol field left unset means.
const (
	DefaultKind     = semconv.KindPOSIX
	DefaultStyle    = semconv.StyleWait
	DefaultTries    = 3           // style poll: F_SETLK calls
	DefaultInterval = time.Second // style poll: between two calls
	// DefaultPoll is how often a waiter's watcher and an observer ask who holds the lock, and
	// the online detector looks for a hang.
	DefaultPoll = 100 * time.Millisecond
)
