package ptracer

import "golang.org/x/sys/unix"

// regs reads a stopped thread's syscall number, arguments and return value (rax; at a
// seccomp stop it holds -ENOSYS, at a syscall-exit stop the result).
func regs(tid int) (nr int64, args [6]uint64, ret int64, err error) {
	var r unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return 0, args, 0, err
	}
	args = [6]uint64{r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9}
	return int64(r.Orig_rax), args, int64(r.Rax), nil
}
