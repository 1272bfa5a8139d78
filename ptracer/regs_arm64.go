package ptracer

import "golang.org/x/sys/unix"

// ntPrstatus is the regset of the general registers (NT_PRSTATUS).
const ntPrstatus = 1

// regs reads a stopped thread's syscall number (x8), arguments (x0-x5) and return value (x0:
// at a syscall-exit stop the first argument is already overwritten, which is why the tracer
// keeps the call it decoded at entry).
func regs(tid int) (nr int64, args [6]uint64, ret int64, err error) {
	var r unix.PtraceRegsArm64
	if err := unix.PtraceGetRegSetArm64(tid, ntPrstatus, &r); err != nil {
		return 0, args, 0, err
	}
	copy(args[:], r.Regs[:6])
	return int64(r.Regs[8]), args, int64(r.Regs[0]), nil
}
