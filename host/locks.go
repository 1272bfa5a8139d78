package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ProcLocksPath is where the kernel lists every file lock of the host.
const ProcLocksPath = "/proc/locks"

// LockEntry is one line of /proc/locks (or one "lock:" line of fdinfo), as
// printed by lock_get_status in the kernel's fs/locks.c:
//
//	1: POSIX  ADVISORY  WRITE 4711 fe:00:1234 0 EOF
//	1: -> POSIX  ADVISORY  WRITE 4712 fe:00:1234 0 EOF
//	1:  -> POSIX  ADVISORY  WRITE 4713 fe:00:1234 0 EOF
//
// The first line is a granted lock (a holder); the "->" lines are requests
// blocked behind it. Since Linux 5.x a request can be blocked behind another
// blocked request: the kernel then indents the "->" one more space per level.
type LockEntry struct {
	// ID is the number before the colon. All lines of one tree (a holder
	// and the requests blocked behind it) share it.
	ID int64
	// Class is POSIX, OFDLCK, FLOCK, LEASE, DELEG, ACCESS or UNKNOWN.
	Class string
	// Type is ADVISORY, MANDATORY (old kernels), MSNFS (old flock), or for
	// leases ACTIVE, BREAKING or BREAKER; *NOINODE* when the kernel had no inode.
	Type string
	// Mode is READ, WRITE, UNLCK, or RW/NONE (old MSNFS flock lines).
	Mode string
	// PID is the owner's pid in the reader's pid namespace; -1 for OFD
	// locks, and whatever a file system reports for remote owners.
	PID int
	// DevMajor, DevMinor and Inode name the file (the superblock's device).
	DevMajor, DevMinor uint32
	Inode              uint64
	// Start and End are byte offsets, inclusive; End is -1 for EOF.
	// Non-POSIX lines always read "0 EOF".
	Start, End int64
	// Waiter is true for a "->" line: a request blocked, not a lock held.
	Waiter bool
	// Depth is 0 for a holder, 1 for a request blocked by the holder, 2 for
	// one blocked behind a depth-1 request, and so on.
	Depth int
	// BlockedBy is the ID of the holder line of this waiter's tree; 0 for
	// holders.
	BlockedBy int64
	// Line is the 1-based line number in the parsed input, and ParentLine
	// the line of the entry this waiter is directly blocked by (the holder
	// for depth 1); 0 for holders. Lines survive filtering, indices would not.
	Line, ParentLine int
	// Raw is the line as the kernel printed it, without the newline.
	Raw string
}

// EOF is the End of a lock that extends to the end of the file.
const EOF = -1

// File returns the file the entry is about.
func (e *LockEntry) File() FileID {
	return FileID{Major: e.DevMajor, Minor: e.DevMinor, Inode: e.Inode}
}

// FileID names a file as /proc/locks does: device major/minor and inode.
type FileID struct {
	Major, Minor uint32
	Inode        uint64
}

// String formats the id the way /proc/locks prints it.
func (f FileID) String() string {
	return fmt.Sprintf("%02x:%02x:%d", f.Major, f.Minor, f.Inode)
}

// StatFile returns the FileID of path. It uses stat(2), so it opens no
// descriptor: opening and closing one would drop the caller's POSIX locks.
func StatFile(path string) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FileID{}, fmt.Errorf("host: stat %s: %w", path, err)
	}
	return statID(&st), nil
}

// StatFD returns the FileID of an open descriptor (fstat(2)).
func StatFD(fd int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, fmt.Errorf("host: fstat fd %d: %w", fd, err)
	}
	return statID(&st), nil
}

func statID(st *unix.Stat_t) FileID {
	dev := uint64(st.Dev) // Dev is narrower than uint64 on some arches
	return FileID{Major: unix.Major(dev), Minor: unix.Minor(dev), Inode: st.Ino}
}

// ReadLocks reads and parses /proc/locks.
func ReadLocks() ([]LockEntry, error) {
	f, err := os.Open(ProcLocksPath)
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	defer f.Close()
	return ParseLocks(f)
}

// ParseLocks parses /proc/locks text. It rejects a malformed line, or a
// waiter line with no entry it could be blocked by, with an error naming
// the line number. Empty lines are skipped.
func ParseLocks(r io.Reader) ([]LockEntry, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("host: read locks: %w", err)
	}
	// One string for the whole input: every Raw, Class, Type and Mode is a
	// substring of it, so a line costs no allocation of its own.
	return parseLocks(string(b), nil)
}

// parseLocks appends the entries of s to dst.
func parseLocks(s string, dst []LockEntry) ([]LockEntry, error) {
	if dst == nil {
		dst = make([]LockEntry, 0, strings.Count(s, "\n")+1)
	}
	// chain[d] is the index in dst of the latest entry at depth d of the
	// current tree; the kernel prints each tree in pre-order, so a waiter's
	// direct blocker is the latest entry one level up.
	var chainBuf [8]int
	chain := chainBuf[:0]
	for lineNo := 1; len(s) > 0; lineNo++ {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if isBlank(line) {
			continue
		}
		e, err := parseLockLine(line)
		if err != nil {
			return dst, fmt.Errorf("host: locks line %d: %w", lineNo, err)
		}
		e.Line = lineNo
		if !e.Waiter {
			chain = append(chain[:0], len(dst))
			dst = append(dst, e)
			continue
		}
		if e.Depth > len(chain) || dst[chain[0]].ID != e.ID {
			return dst, fmt.Errorf("host: locks line %d: waiter at depth %d has no blocker line before it", lineNo, e.Depth)
		}
		e.BlockedBy = e.ID
		e.ParentLine = dst[chain[e.Depth-1]].Line
		chain = append(chain[:e.Depth], len(dst))
		dst = append(dst, e)
	}
	return dst, nil
}

// errFields marks a line that is not lock_get_status output.
var errFields = errors.New("malformed lock line")

// parseLockLine parses one lock_get_status line (without "lock:\t" or
// newline). Depth comes from the spaces between "N:" and "->".
func parseLockLine(line string) (LockEntry, error) {
	e := LockEntry{Raw: line}
	rest := strings.TrimLeft(line, " \t")
	colon := strings.IndexByte(rest, ':')
	if colon <= 0 {
		return e, fmt.Errorf("%w: no \"N:\" id: %q", errFields, line)
	}
	id, err := strconv.ParseInt(rest[:colon], 10, 64)
	if err != nil {
		return e, fmt.Errorf("%w: id: %q", errFields, line)
	}
	e.ID = id
	rest = rest[colon+1:]
	spaces := len(rest) - len(strings.TrimLeft(rest, " "))
	rest = rest[spaces:]
	if strings.HasPrefix(rest, "->") {
		e.Waiter = true
		e.Depth = max(spaces, 1)
		rest = rest[2:]
	}
	var f [8]string
	n := 0
	for {
		var field string
		field, rest = nextField(rest)
		if field == "" {
			break
		}
		if n == len(f) {
			return e, fmt.Errorf("%w: too many fields: %q", errFields, line)
		}
		f[n] = field
		n++
	}
	if n != 7 {
		return e, fmt.Errorf("%w: %d fields after the id, want 7: %q", errFields, n, line)
	}
	e.Class, e.Type, e.Mode = f[0], f[1], f[2]
	pid, err := strconv.ParseInt(f[3], 10, 32)
	if err != nil {
		return e, fmt.Errorf("%w: pid %q", errFields, f[3])
	}
	e.PID = int(pid)
	if err := parseDev(f[4], &e); err != nil {
		return e, err
	}
	if e.Start, err = strconv.ParseInt(f[5], 10, 64); err != nil {
		return e, fmt.Errorf("%w: start %q", errFields, f[5])
	}
	if f[6] == "EOF" {
		e.End = EOF
	} else if e.End, err = strconv.ParseInt(f[6], 10, 64); err != nil {
		return e, fmt.Errorf("%w: end %q", errFields, f[6])
	}
	return e, nil
}

// nextField splits the first space- or tab-separated field off s; strings.Fields
// would allocate a slice per line.
func nextField(s string) (field, rest string) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\t' {
		j++
	}
	return s[i:j], s[j:]
}

func isBlank(s string) bool {
	field, _ := nextField(s)
	return field == ""
}

// parseDev parses "%02x:%02x:%lu" (major:minor:inode) or "<none>:0".
func parseDev(s string, e *LockEntry) error {
	if s == "<none>:0" {
		return nil
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return fmt.Errorf("%w: device %q", errFields, s)
	}
	j := strings.IndexByte(s[i+1:], ':')
	if j < 0 {
		return fmt.Errorf("%w: device %q", errFields, s)
	}
	j += i + 1
	maj, err1 := strconv.ParseUint(s[:i], 16, 32)
	minor, err2 := strconv.ParseUint(s[i+1:j], 16, 32)
	ino, err3 := strconv.ParseUint(s[j+1:], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Errorf("%w: device %q", errFields, s)
	}
	e.DevMajor, e.DevMinor, e.Inode = uint32(maj), uint32(minor), ino
	return nil
}

// FilterFile returns the entries about file id (holders with their waiters:
// all lines of a tree are on the same inode).
func FilterFile(entries []LockEntry, id FileID) []LockEntry {
	var out []LockEntry
	for i := range entries {
		if entries[i].File() == id {
			out = append(out, entries[i])
		}
	}
	return out
}

// LockGroup is a holder line with every request blocked in its tree.
type LockGroup struct {
	Holder LockEntry
	// Waiters are in the kernel's order (pre-order); each one's ParentLine
	// says whom it waits for directly.
	Waiters []LockEntry
}

// GroupLocks attaches waiters to their holders. Waiters whose holder is not
// in entries (a filtered slice) are dropped.
func GroupLocks(entries []LockEntry) []LockGroup {
	var groups []LockGroup
	for i := range entries {
		e := &entries[i]
		if !e.Waiter {
			groups = append(groups, LockGroup{Holder: *e})
			continue
		}
		if n := len(groups); n > 0 && groups[n-1].Holder.ID == e.BlockedBy {
			groups[n-1].Waiters = append(groups[n-1].Waiters, *e)
		}
	}
	return groups
}
