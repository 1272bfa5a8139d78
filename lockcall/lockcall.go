// Package lockcall decodes the system calls that take, test and drop file locks — fcntl with
// F_SETLK, F_SETLKW, F_GETLK and their OFD forms, flock(2) — and the calls that drop POSIX locks
// as a side effect (close, dup2, dup3, close_range), from a syscall number and its six
// arguments as the kernel passes them. The tracer reads those from a stopped thread's
// registers, the sampler from /proc/PID/syscall; both then read the struct flock the third
// argument points to and decode it here.
//
// It is pure: no I/O. Syscall numbers and the struct flock layout are per architecture; amd64
// and arm64 are known (both LP64, so struct flock is the same 32 bytes on both).
package lockcall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"github.com/lockprobe/lockprobe/semconv"
)

// Arch holds one architecture's syscall numbers. A number of -1 means the call does not exist
// there (arm64 has no dup2).
type Arch struct {
	Name       string
	AuditArch  uint32 // AUDIT_ARCH_* as seccomp_data.arch carries it
	Fcntl      int64
	Flock      int64
	Close      int64
	Dup2       int64
	Dup3       int64
	CloseRange int64
}

// AMD64 and ARM64 are the architectures lockcall knows (arch/x86/entry/syscalls/syscall_64.tbl,
// include/uapi/asm-generic/unistd.h).
var (
	AMD64 = Arch{Name: "amd64", AuditArch: 0xc000003e, Fcntl: 72, Flock: 73, Close: 3, Dup2: 33, Dup3: 292, CloseRange: 436}
	ARM64 = Arch{Name: "arm64", AuditArch: 0xc00000b7, Fcntl: 25, Flock: 32, Close: 57, Dup2: -1, Dup3: 24, CloseRange: 436}
)

// ErrArch says this build runs on an architecture lockcall has no table for.
var ErrArch = errors.New("lockcall: syscall numbers for this architecture are not known (amd64 and arm64 are)")

// Native returns the table of the architecture this program runs on.
func Native() (Arch, error) {
	switch runtime.GOARCH {
	case "amd64":
		return AMD64, nil
	case "arm64":
		return ARM64, nil
	}
	return Arch{}, fmt.Errorf("%w: %s", ErrArch, runtime.GOARCH)
}

// Numbers returns the syscall numbers a tracer must stop on, in a fixed order.
func (a Arch) Numbers() []int64 {
	var out []int64
	for _, n := range []int64{a.Fcntl, a.Flock, a.Close, a.Dup2, a.Dup3, a.CloseRange} {
		if n >= 0 {
			out = append(out, n)
		}
	}
	return out
}

// fcntl commands (include/uapi/asm-generic/fcntl.h; on 64-bit kernels the *64 forms are the
// same numbers).
const (
	FGetlk     = 5
	FSetlk     = 6
	FSetlkw    = 7
	FOFDGetlk  = 36
	FOFDSetlk  = 37
	FOFDSetlkw = 38
)

// LockCommands are the fcntl commands that take or test a lock.
var LockCommands = []uint32{FGetlk, FSetlk, FSetlkw, FOFDGetlk, FOFDSetlk, FOFDSetlkw}

// flock(2) operations.
const (
	lockSH = 1
	lockEX = 2
	lockNB = 4
	lockUN = 8
)

// struct flock's l_type values.
const (
	FRdlck = 0
	FWrlck = 1
	FUnlck = 2
)

// Op is what a call does to locks.
type Op int

// The operations.
const (
	OpNone       Op = iota // not a lock call: a tracer lets it go
	OpLock                 // take (or convert) a lock: F_SETLK(W), F_OFD_SETLK(W) with a read or write type, flock LOCK_SH/EX
	OpUnlock               // drop a lock: F_UNLCK, LOCK_UN
	OpGetlk                // test: F_GETLK, F_OFD_GETLK
	OpClose                // close(fd): drops the process's POSIX locks on that file
	OpDup                  // dup2/dup3(old, new): closes new first
	OpCloseRange           // close_range(first, last)
)

var opNames = [...]string{"none", "lock", "unlock", "getlk", "close", "dup", "close_range"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Call is one decoded call. For fcntl the range and type live in user memory at Addr: a
// decoder that can read it calls SetFlock.
type Call struct {
	Op   Op
	Kind semconv.Kind // KindPOSIX, KindOFD, KindFlock; KindUnset for close and dup
	// Mode is semconv.ModeRead or ModeWrite for OpLock and OpGetlk, ModeNone for OpUnlock.
	Mode semconv.Mode
	// Wait is true for a call that blocks until granted: F_SETLKW, F_OFD_SETLKW, flock
	// without LOCK_NB.
	Wait bool
	FD   int
	// NewFD is dup's target, Last close_range's last descriptor.
	NewFD, Last int
	// Addr is the user address of the struct flock (fcntl only).
	Addr uint64
	// Whence, Start and Len are struct flock's l_whence, l_start, l_len once read; flock
	// locks are always the whole file (0, 0).
	Whence int16
	Start  int64
	Len    int64
	// PID is l_pid: what F_GETLK answered on return.
	PID int32
	// HaveFlock says the struct flock was read.
	HaveFlock bool
}

// Style returns the acquire style of a lock call: wait or try.
func (c Call) Style() semconv.Style {
	if c.Wait {
		return semconv.StyleWait
	}
	return semconv.StyleTry
}

// Decode decodes syscall nr with its arguments on arch. ok is false for calls that are no lock
// business (another syscall, an fcntl command that is no lock command).
func Decode(a Arch, nr int64, args [6]uint64) (c Call, ok bool) {
	fd := int(int32(args[0]))
	switch nr {
	case a.Fcntl:
		c.FD = fd
		c.Addr = args[2]
		switch uint32(args[1]) {
		case FSetlk, FSetlkw:
			c.Op, c.Kind, c.Wait = OpLock, semconv.KindPOSIX, uint32(args[1]) == FSetlkw
		case FOFDSetlk, FOFDSetlkw:
			c.Op, c.Kind, c.Wait = OpLock, semconv.KindOFD, uint32(args[1]) == FOFDSetlkw
		case FGetlk:
			c.Op, c.Kind = OpGetlk, semconv.KindPOSIX
		case FOFDGetlk:
			c.Op, c.Kind = OpGetlk, semconv.KindOFD
		default:
			return Call{}, false
		}
		return c, true
	case a.Flock:
		c.FD, c.Kind = fd, semconv.KindFlock
		op := args[1]
		switch {
		case op&lockUN != 0:
			c.Op, c.Mode = OpUnlock, semconv.ModeNone
		case op&lockEX != 0:
			c.Op, c.Mode = OpLock, semconv.ModeWrite
		case op&lockSH != 0:
			c.Op, c.Mode = OpLock, semconv.ModeRead
		default:
			return Call{}, false // EINVAL: the kernel refuses it, nothing changes
		}
		c.Wait = c.Op == OpLock && op&lockNB == 0
		c.HaveFlock = true
		return c, true
	case a.Close:
		return Call{Op: OpClose, FD: fd}, true
	case a.Dup2, a.Dup3:
		if nr < 0 {
			return Call{}, false
		}
		return Call{Op: OpDup, FD: fd, NewFD: int(int32(args[1]))}, true
	case a.CloseRange:
		last := int(int32(args[1]))
		if uint32(args[1]) > 1<<30 {
			last = 1 << 30 // ~0U: to the end of the table
		}
		return Call{Op: OpCloseRange, FD: fd, Last: last}, true
	}
	return Call{}, false
}

// FlockSize is sizeof(struct flock) on LP64 Linux.
const FlockSize = 32

// SetFlock fills the call from the struct flock bytes read at Addr: l_type (int16 at 0),
// l_whence (int16 at 2), l_start (int64 at 8), l_len (int64 at 16), l_pid (int32 at 24).
func (c *Call) SetFlock(b []byte) error {
	if len(b) < FlockSize {
		return fmt.Errorf("lockcall: struct flock: %d bytes, want %d", len(b), FlockSize)
	}
	le := binary.LittleEndian
	typ := int16(le.Uint16(b[0:]))
	c.Whence = int16(le.Uint16(b[2:]))
	c.Start = int64(le.Uint64(b[8:]))
	c.Len = int64(le.Uint64(b[16:]))
	c.PID = int32(le.Uint32(b[24:]))
	switch typ {
	case FRdlck:
		c.Mode = semconv.ModeRead
	case FWrlck:
		c.Mode = semconv.ModeWrite
	case FUnlck:
		c.Mode = semconv.ModeNone
		if c.Op == OpLock {
			c.Op = OpUnlock
		}
	default:
		return fmt.Errorf("lockcall: struct flock: l_type %d is none of F_RDLCK, F_WRLCK, F_UNLCK", typ)
	}
	if c.Whence < 0 || c.Whence > 2 {
		return fmt.Errorf("lockcall: struct flock: l_whence %d is none of SEEK_SET, SEEK_CUR, SEEK_END", c.Whence)
	}
	c.HaveFlock = true
	return nil
}

// Resolve turns a SEEK_CUR or SEEK_END range into an absolute one, given the descriptor's
// offset and the file's size, and a negative length into the range before start (as the
// kernel's flock_to_posix_lock does). It returns false when the range is invalid (EINVAL).
func (c *Call) Resolve(offset, size int64) bool {
	switch c.Whence {
	case 1:
		c.Start += offset
	case 2:
		c.Start += size
	}
	c.Whence = 0
	if c.Len < 0 {
		c.Start += c.Len
		c.Len = -c.Len
	}
	return c.Start >= 0
}

// Text renders the call as strace would name it, for logs and spans.
func (c Call) Text() string {
	switch c.Op {
	case OpClose:
		return fmt.Sprintf("close(%d)", c.FD)
	case OpDup:
		return fmt.Sprintf("dup(%d, %d)", c.FD, c.NewFD)
	case OpCloseRange:
		return fmt.Sprintf("close_range(%d, %d)", c.FD, c.Last)
	}
	if c.Kind == semconv.KindFlock {
		op := map[semconv.Mode]string{semconv.ModeRead: "LOCK_SH", semconv.ModeWrite: "LOCK_EX", semconv.ModeNone: "LOCK_UN"}[c.Mode]
		if !c.Wait && c.Op == OpLock {
			op += "|LOCK_NB"
		}
		return fmt.Sprintf("flock(%d, %s)", c.FD, op)
	}
	cmd := "F_SETLK"
	switch {
	case c.Op == OpGetlk:
		cmd = "F_GETLK"
	case c.Wait:
		cmd = "F_SETLKW"
	}
	if c.Kind == semconv.KindOFD {
		cmd = "F_OFD_" + cmd[2:]
	}
	typ := map[semconv.Mode]string{semconv.ModeRead: "F_RDLCK", semconv.ModeWrite: "F_WRLCK", semconv.ModeNone: "F_UNLCK"}[c.Mode]
	if !c.HaveFlock {
		return fmt.Sprintf("fcntl(%d, %s, %#x)", c.FD, cmd, c.Addr)
	}
	return fmt.Sprintf("fcntl(%d, %s, {%s, start=%d, len=%d})", c.FD, cmd, typ, c.Start, c.Len)
}

// Desc is what a descriptor referred to at a call, as the kernel had it. A tracer that stops
// the thread (ptrace) leaves it empty: the recorder reads /proc while the thread waits. One
// that does not (eBPF) reads it in the kernel at the call, since by the time the event is
// handled the descriptor may be closed or refer to another file.
type Desc struct {
	Major, Minor uint32 // the file's device
	Ino          uint64
	Size, Pos    int64 // the file's size and the descriptor's offset, for SEEK_END and SEEK_CUR ranges
	// OFD identifies the open file description (the kernel's struct file): OFD and flock
	// locks belong to it, and every descriptor of it, in any process, is the same owner.
	OFD uint64
	// Refs counts the references to the open file description, this descriptor's included:
	// closing the last one drops its OFD and flock locks. 0: unknown.
	Refs int64
}
