package lockcall

import (
	"fmt"
	"strconv"
	"strings"
)

// ProcSyscall is /proc/PID/task/TID/syscall parsed: the call a blocked thread is in.
type ProcSyscall struct {
	// InCall is false when the thread is running ("running") or blocked outside a syscall
	// ("-1 SP PC": a page fault, a stop).
	InCall bool
	// Running says the kernel printed "running": the thread was on a CPU.
	Running bool
	Nr      int64
	Args    [6]uint64
}

// ParseProcSyscall parses the kernel's "NR ARG1..ARG6 SP PC" line (arguments in hex),
// "-1 SP PC" or "running".
func ParseProcSyscall(s string) (ProcSyscall, error) {
	s = strings.TrimSpace(s)
	if s == "running" {
		return ProcSyscall{Running: true}, nil
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return ProcSyscall{}, fmt.Errorf("lockcall: /proc syscall: empty")
	}
	nr, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return ProcSyscall{}, fmt.Errorf("lockcall: /proc syscall: number %q", f[0])
	}
	if nr < 0 {
		if len(f) != 3 {
			return ProcSyscall{}, fmt.Errorf("lockcall: /proc syscall: %q: want -1 SP PC", s)
		}
		return ProcSyscall{}, nil
	}
	if len(f) != 9 {
		return ProcSyscall{}, fmt.Errorf("lockcall: /proc syscall: %q: %d fields, want 9", s, len(f))
	}
	p := ProcSyscall{InCall: true, Nr: nr}
	for i := range p.Args {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[1+i], "0x"), 16, 64)
		if err != nil {
			return ProcSyscall{}, fmt.Errorf("lockcall: /proc syscall: argument %d %q", i+1, f[1+i])
		}
		p.Args[i] = v
	}
	return p, nil
}
