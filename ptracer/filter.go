package ptracer

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/lockcall"
)

// seccomp_data offsets: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
const (
	offNr    = 0
	offArch  = 4
	offArg1  = 16 + 8 // low 32 bits of args[1] (little-endian): the fcntl command
	bpfLdW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeqK  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfRetK  = unix.BPF_RET | unix.BPF_K
	retTrace = unix.SECCOMP_RET_TRACE
	retAllow = unix.SECCOMP_RET_ALLOW
)

// Filter returns the seccomp program that stops the process (SECCOMP_RET_TRACE) on the lock
// calls of arch — fcntl with a lock command, flock — and on the calls that can drop POSIX locks
// (close, dup2, dup3, close_range), and lets every other call run at full speed. Calls of
// another ABI (x32, a 32-bit binary on a 64-bit kernel) are let through: lockcall knows only
// the native numbers, a limit the README states.
func Filter(a lockcall.Arch) []unix.SockFilter {
	// Layout: [arch check] [nr loads and jumps] [allow] [fcntl cmd checks] [allow] [trace]
	others := []int64{}
	for _, n := range a.Numbers() {
		if n != a.Fcntl {
			others = append(others, n)
		}
	}
	cmds := lockcall.LockCommands
	// indices
	nOthers, nCmds := len(others), len(cmds)
	prog := []unix.SockFilter{}
	// 0: load arch; 1: if arch != native → allow
	prog = append(prog, unix.SockFilter{Code: bpfLdW, K: offArch})
	archIdx := len(prog)
	prog = append(prog, unix.SockFilter{Code: bpfJeqK, K: a.AuditArch}) // jf patched below
	prog = append(prog, unix.SockFilter{Code: bpfLdW, K: offNr})
	fcntlIdx := len(prog)
	prog = append(prog, unix.SockFilter{Code: bpfJeqK, K: uint32(a.Fcntl)}) // jt patched
	otherIdx := len(prog)
	for _, n := range others {
		prog = append(prog, unix.SockFilter{Code: bpfJeqK, K: uint32(n)}) // jt patched → trace
	}
	allow1 := len(prog)
	prog = append(prog, unix.SockFilter{Code: bpfRetK, K: retAllow})
	cmdLoad := len(prog)
	prog = append(prog, unix.SockFilter{Code: bpfLdW, K: offArg1})
	cmdIdx := len(prog)
	for _, c := range cmds {
		prog = append(prog, unix.SockFilter{Code: bpfJeqK, K: c})
	}
	prog = append(prog, unix.SockFilter{Code: bpfRetK, K: retAllow}) // no lock command
	trace := len(prog)
	prog = append(prog, unix.SockFilter{Code: bpfRetK, K: retTrace})
	// Jumps are relative to the next instruction.
	rel := func(from, to int) uint8 { return uint8(to - from - 1) }
	prog[archIdx].Jt, prog[archIdx].Jf = 0, rel(archIdx, allow1)
	prog[fcntlIdx].Jt, prog[fcntlIdx].Jf = rel(fcntlIdx, cmdLoad), 0
	for i := range nOthers {
		j := otherIdx + i
		prog[j].Jt, prog[j].Jf = rel(j, trace), 0
	}
	for i := range nCmds {
		j := cmdIdx + i
		prog[j].Jt, prog[j].Jf = rel(j, trace), 0
	}
	return prog
}

// InstallAndExec is the traced child's side: it forbids new privileges (so that an
// unprivileged process may install a filter; a setuid program then runs without its
// privileges), installs Filter on its own thread and replaces itself with path. It returns
// only on error. It first stops itself (SIGSTOP) for the tracer to seize it, so that the filter's
// stops (SECCOMP_RET_TRACE fails a call with ENOSYS when no tracer is there) all go to the tracer.
func InstallAndExec(path string, argv, env []string) error {
	runtime.LockOSThread() // the filter is per thread; exec must run on the thread that has it
	if err := unix.Kill(unix.Getpid(), unix.SIGSTOP); err != nil {
		return fmt.Errorf("ptracer: stop for the tracer: %w", err)
	}
	a, err := lockcall.Native()
	if err != nil {
		return err
	}
	prog := Filter(a)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("ptracer: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("ptracer: install seccomp filter: %w", err)
	}
	if err := unix.Exec(path, argv, env); err != nil {
		return fmt.Errorf("ptracer: exec %s: %w", path, err)
	}
	return nil
}
