package ebpftracer

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The programs are written with cilium/ebpf's asm package, in Go: nothing is compiled by a C
// toolchain and no object file is committed (ARCHITECTURE.md says why). Each runs on a
// tracepoint, returns at once unless the current process's thread group is in the `pids` map
// (the traced tree: the copies lockprobe started, or the processes `watch` was given, and every
// process they fork), and writes one fixed-size event into the `events` ring buffer.

// Event kinds, as the program writes them (event.kind).
const (
	evFcntlEnter = 1 + iota
	evFcntlExit
	evFlockEnter
	evFlockExit
	evClose
	evDup
	evCloseRange
	evExec
	evExit
	evFork // arg: the child's pid
)

// The event layout (little-endian; eventSize bytes).
const (
	offTS     = 0  // u64 CLOCK_MONOTONIC ns
	offTID    = 8  // u32 (low half of bpf_get_current_pid_tgid)
	offTGID   = 12 // u32
	offKind   = 16 // u32
	offFD     = 20 // s32
	offArg    = 24 // u64: the fcntl command, the flock operation, dup's new fd, close_range's last
	offAddr   = 32 // u64: struct flock's address
	offRet    = 40 // s64: the return value; the exit code for evExit
	offFile   = 48 // u64: the struct file (the open file description) behind fd
	offIno    = 56 // u64
	offSize   = 64 // s64
	offPos    = 72 // s64
	offRefs   = 80 // u64: the file's reference count as the kernel stores it
	offDev    = 88 // u32: the kernel's dev_t (major << 20 | minor)
	offFlags  = 92 // u32: flagFile, flagFlock
	offFlock  = 96 // struct flock, 32 bytes
	eventSize = 128

	flagFile  = 1 // the descriptor's file was read
	flagFlock = 2 // the struct flock was read
)

// Stack layout of every program, below the frame pointer.
const (
	stEvent   = -eventSize // the event being built
	stScratch = stEvent - 8
	stKey     = stScratch - 8 // u32 map key (thread group or thread id)
	stVal     = stKey - 16    // inflight value: addr, arg
	stFD      = stVal - 8     // the descriptor being looked at
	stFdt     = stFD - 8
)

// syscall tracepoint arguments start at offset 16 of the context, 8 bytes each.
func sysArg(i int16) int16 { return 16 + 8*i }

// maps the programs use.
type maps struct {
	pids, inflight, events, lost *ebpf.Map
}

// Map names, as the programs' instructions refer to them.
const (
	mapPids     = "pids"
	mapInflight = "inflight"
	mapEvents   = "events"
	mapLost     = "lost"
)

func mapSpecs() map[string]*ebpf.MapSpec {
	return map[string]*ebpf.MapSpec{
		mapPids:     {Name: "lp_pids", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1 << 15},
		mapInflight: {Name: "lp_inflight", Type: ebpf.Hash, KeySize: 4, ValueSize: 16, MaxEntries: 1 << 15},
		mapEvents:   {Name: "lp_events", Type: ebpf.RingBuf, MaxEntries: 16 << 20},
		mapLost:     {Name: "lp_lost", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
	}
}

// license is the programs' license as the kernel sees it: the helpers they call
// (bpf_probe_read_kernel, bpf_probe_read_user) are for GPL-compatible programs only.
const license = "Dual MIT/GPL"

// builder emits one program.
type builder struct {
	ins asm.Instructions
	o   offsets
}

func (b *builder) add(ins ...asm.Instruction) { b.ins = append(b.ins, ins...) }

// prologue keeps the context in R6 and pid_tgid in R7, and returns from the program unless the
// thread group is traced.
func (b *builder) prologue() {
	b.add(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.RSh.Imm(asm.R0, 32),
		asm.StoreMem(asm.RFP, stKey, asm.R0, asm.Word),
	)
	b.mapCall(asm.FnMapLookupElem, mapPids, false, "")
	b.add(asm.JEq.Imm(asm.R0, 0, "out"))
}

// mapCall calls a map helper on map m with the key at stKey (and, with value, the value at
// stVal and BPF_ANY); label, when not empty, names its first instruction.
func (b *builder) mapCall(fn asm.BuiltinFunc, m string, value bool, label string) {
	ld := asm.LoadMapPtr(asm.R1, 0).WithReference(m)
	if label != "" {
		ld = ld.WithSymbol(label)
	}
	b.add(ld, asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, stKey))
	if value {
		b.add(asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, stVal), asm.Mov.Imm(asm.R4, 0))
	}
	b.add(fn.Call())
}

// epilogue returns 0; "out" lands here.
func (b *builder) epilogue() {
	b.add(asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
}

// begin zeroes the event and fills time, ids and kind.
func (b *builder) begin(kind int32) {
	b.add(asm.Mov.Imm(asm.R1, 0))
	for off := int16(0); off < eventSize; off += 8 {
		b.add(asm.StoreMem(asm.RFP, stEvent+off, asm.R1, asm.DWord))
	}
	b.add(
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, stEvent+offTS, asm.R0, asm.DWord),
		asm.StoreMem(asm.RFP, stEvent+offTID, asm.R7, asm.DWord), // tid, then tgid
		asm.StoreImm(asm.RFP, stEvent+offKind, int64(kind), asm.Word),
	)
}

// ctxToEvent copies syscall argument i (8 bytes) into the event at off.
func (b *builder) ctxToEvent(i, off int16, size asm.Size) {
	b.add(asm.LoadMem(asm.R1, asm.R6, sysArg(i), asm.DWord), asm.StoreMem(asm.RFP, stEvent+off, asm.R1, size))
}

// readKernel reads size bytes at src+off (src a register holding a kernel address) to the
// stack at dst; on failure it jumps to fail.
func (b *builder) readKernel(dst int16, size int32, src asm.Register, off int32, fail string) {
	b.add(
		asm.Mov.Reg(asm.R3, src),
		asm.Add.Imm(asm.R3, off),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, int32(dst)),
		asm.Mov.Imm(asm.R2, size),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, fail),
	)
}

// fileOf fills the event's file fields for the descriptor at stFD: current task → files →
// fdt → fd[fd] → file (f_pos, f_ref) → inode (i_ino, i_size) → i_sb → s_dev. Any step that
// fails leaves the fields zero and flagFile clear. label makes the jump targets unique.
func (b *builder) fileOf(label string) {
	done := label + "_done"
	o := b.o
	b.add(asm.FnGetCurrentTask.Call(), asm.Mov.Reg(asm.R8, asm.R0))
	b.readKernel(stScratch, 8, asm.R8, o.taskFiles, done)
	b.add(asm.LoadMem(asm.R8, asm.RFP, stScratch, asm.DWord), asm.JEq.Imm(asm.R8, 0, done))
	b.readKernel(stScratch, 8, asm.R8, o.filesFdt, done)
	b.add(asm.LoadMem(asm.R8, asm.RFP, stScratch, asm.DWord), asm.JEq.Imm(asm.R8, 0, done),
		asm.StoreMem(asm.RFP, stFdt, asm.R8, asm.DWord))
	// fd < max_fds, or the array read would name another object's file.
	b.add(asm.Mov.Imm(asm.R1, 0), asm.StoreMem(asm.RFP, stScratch, asm.R1, asm.DWord))
	b.readKernel(stScratch, 4, asm.R8, o.fdtMaxFds, done)
	b.add(
		asm.LoadMem(asm.R1, asm.RFP, stScratch, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stFD, asm.Word),
		asm.JGE.Reg(asm.R2, asm.R1, done),
		asm.LoadMem(asm.R8, asm.RFP, stFdt, asm.DWord),
	)
	b.readKernel(stScratch, 8, asm.R8, o.fdtFd, done)
	b.add(
		asm.LoadMem(asm.R8, asm.RFP, stScratch, asm.DWord), asm.JEq.Imm(asm.R8, 0, done),
		asm.LoadMem(asm.R1, asm.RFP, stFD, asm.Word),
		asm.LSh.Imm(asm.R1, 3),
		asm.Add.Reg(asm.R8, asm.R1),
	)
	b.readKernel(stScratch, 8, asm.R8, 0, done)
	b.add(asm.LoadMem(asm.R8, asm.RFP, stScratch, asm.DWord), asm.JEq.Imm(asm.R8, 0, done),
		asm.StoreMem(asm.RFP, stEvent+offFile, asm.R8, asm.DWord))
	b.readKernel(stEvent+offPos, 8, asm.R8, o.filePos, done)
	b.readKernel(stEvent+offRefs, 8, asm.R8, o.fileRf, done)
	b.readKernel(stScratch, 8, asm.R8, o.fileInode, done)
	b.add(asm.LoadMem(asm.R8, asm.RFP, stScratch, asm.DWord), asm.JEq.Imm(asm.R8, 0, done))
	b.readKernel(stEvent+offIno, 8, asm.R8, o.inodeIno, done)
	b.readKernel(stEvent+offSize, 8, asm.R8, o.inodeSize, done)
	b.readKernel(stScratch, 8, asm.R8, o.inodeSb, done)
	b.add(asm.LoadMem(asm.R8, asm.RFP, stScratch, asm.DWord), asm.JEq.Imm(asm.R8, 0, done))
	b.readKernel(stEvent+offDev, 4, asm.R8, o.sbDev, done)
	b.add(
		asm.LoadMem(asm.R1, asm.RFP, stEvent+offFlags, asm.Word),
		asm.Or.Imm(asm.R1, flagFile),
		asm.StoreMem(asm.RFP, stEvent+offFlags, asm.R1, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(done),
	)
}

// readFlock reads the struct flock at the event's addr from user memory.
func (b *builder) readFlock(label string) {
	done := label + "_flock"
	b.add(
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stEvent+offFlock),
		asm.Mov.Imm(asm.R2, 32),
		asm.LoadMem(asm.R3, asm.RFP, stEvent+offAddr, asm.DWord),
		asm.FnProbeReadUser.Call(),
		asm.JNE.Imm(asm.R0, 0, done),
		asm.LoadMem(asm.R1, asm.RFP, stEvent+offFlags, asm.Word),
		asm.Or.Imm(asm.R1, flagFlock),
		asm.StoreMem(asm.RFP, stEvent+offFlags, asm.R1, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(done),
	)
}

// wakeAt is how much unread data makes the program wake the reader. Below it the event goes
// in without a wake-up (BPF_RB_NO_WAKEUP) and the reader picks it up at its next poll: a
// wake-up per event would cost the traced program a context switch per lock call.
const wakeAt = 1 << 20

// output writes the event to the ring buffer, counting it in `lost` when the buffer is full,
// and goes on after it (label "sent": once per program).
func (b *builder) output() {
	b.add(
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapEvents),
		asm.Mov.Imm(asm.R2, 0), // BPF_RB_AVAIL_DATA
		asm.FnRingbufQuery.Call(),
		asm.Mov.Imm(asm.R8, 1), // BPF_RB_NO_WAKEUP
		asm.JLT.Imm(asm.R0, wakeAt, "quiet"),
		asm.Mov.Imm(asm.R8, 2), // BPF_RB_FORCE_WAKEUP
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapEvents).WithSymbol("quiet"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stEvent),
		asm.Mov.Imm(asm.R3, eventSize),
		asm.Mov.Reg(asm.R4, asm.R8),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "sent"),
		asm.StoreImm(asm.RFP, stKey, 0, asm.Word),
	)
	b.mapCall(asm.FnMapLookupElem, mapLost, false, "")
	b.add(
		asm.JEq.Imm(asm.R0, 0, "sent"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("sent"),
	)
}

// tidKey puts the current thread id at stKey.
func (b *builder) tidKey() {
	b.add(asm.StoreMem(asm.RFP, stKey, asm.R7, asm.Word))
}

// remember stores (addr, arg) of the event as the thread's call in flight.
func (b *builder) remember() {
	b.add(
		asm.LoadMem(asm.R1, asm.RFP, stEvent+offAddr, asm.DWord),
		asm.StoreMem(asm.RFP, stVal, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, stEvent+offArg, asm.DWord),
		asm.StoreMem(asm.RFP, stVal+8, asm.R1, asm.DWord),
	)
	b.tidKey()
	b.mapCall(asm.FnMapUpdateElem, mapInflight, true, "")
}

// lockCommands are fcntl's lock commands (lockcall.LockCommands).
var lockCommands = []int32{5, 6, 7, 36, 37, 38}

// fcntlEnter: a lock command's entry, with its struct flock and the descriptor's file.
func (b *builder) fcntlEnter() {
	b.prologue()
	b.add(asm.LoadMem(asm.R1, asm.R6, sysArg(1), asm.DWord))
	for _, c := range lockCommands {
		b.add(asm.JEq.Imm(asm.R1, c, "lockcmd"))
	}
	b.add(asm.Ja.Label("out"))
	b.add(asm.Mov.Imm(asm.R0, 0).WithSymbol("lockcmd"))
	b.begin(evFcntlEnter)
	b.ctxToEvent(0, offFD, asm.Word)
	b.ctxToEvent(1, offArg, asm.DWord)
	b.ctxToEvent(2, offAddr, asm.DWord)
	b.readFlock("e")
	b.ctxToEvent(0, stFD-stEvent, asm.Word)
	b.fileOf("f")
	b.remember()
	b.output()
	b.epilogue()
}

// syscallExit: the return of a call remembered at its entry (fcntl or flock); for F_GETLK the
// answer in struct flock.
func (b *builder) syscallExit(kind int32) {
	b.prologue()
	b.tidKey()
	b.mapCall(asm.FnMapLookupElem, mapInflight, false, "")
	b.add(asm.JEq.Imm(asm.R0, 0, "out"), asm.Mov.Reg(asm.R9, asm.R0))
	b.begin(kind)
	b.add(
		asm.LoadMem(asm.R1, asm.R9, 0, asm.DWord),
		asm.StoreMem(asm.RFP, stEvent+offAddr, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R9, 8, asm.DWord),
		asm.StoreMem(asm.RFP, stEvent+offArg, asm.R1, asm.DWord),
	)
	b.ctxToEvent(0, offRet, asm.DWord)
	if kind == evFcntlExit {
		b.add(
			asm.LoadMem(asm.R1, asm.RFP, stEvent+offArg, asm.DWord),
			asm.JEq.Imm(asm.R1, 5, "getlk"),
			asm.JEq.Imm(asm.R1, 36, "getlk"),
			asm.Ja.Label("del"),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("getlk"),
		)
		b.readFlock("x")
	}
	b.add(asm.StoreMem(asm.RFP, stKey, asm.R7, asm.Word).WithSymbol("del"))
	b.mapCall(asm.FnMapDeleteElem, mapInflight, false, "")
	b.output()
	b.epilogue()
}

// flockEnter: flock(fd, op).
func (b *builder) flockEnter() {
	b.prologue()
	b.begin(evFlockEnter)
	b.ctxToEvent(0, offFD, asm.Word)
	b.ctxToEvent(1, offArg, asm.DWord)
	b.ctxToEvent(0, stFD-stEvent, asm.Word)
	b.fileOf("f")
	b.remember()
	b.output()
	b.epilogue()
}

// fdCall: close(fd), dup2/dup3(old, new) (the file behind new, which the call closes) and
// close_range(first, last) (no file): no return is needed.
func (b *builder) fdCall(kind int32) {
	b.prologue()
	b.begin(kind)
	b.ctxToEvent(0, offFD, asm.Word)
	switch kind {
	case evClose:
		b.ctxToEvent(0, stFD-stEvent, asm.Word)
		b.fileOf("f")
	case evDup:
		b.ctxToEvent(1, offArg, asm.DWord)
		b.ctxToEvent(1, stFD-stEvent, asm.Word)
		b.fileOf("f")
	case evCloseRange:
		b.ctxToEvent(1, offArg, asm.DWord)
	}
	b.output()
	b.epilogue()
}

// procExec: sched_process_exec of a traced process.
func (b *builder) procExec() {
	b.prologue()
	b.begin(evExec)
	b.output()
	b.epilogue()
}

// procFork: sched_process_fork by a traced process puts the child (a process, or a thread
// whose id is then a harmless key) into `pids`. childOff is child_pid's offset in the
// tracepoint's record.
func (b *builder) procFork(childOff int16) {
	b.prologue()
	b.add(
		asm.LoadMem(asm.R1, asm.R6, childOff, asm.Word),
		asm.StoreMem(asm.RFP, stKey, asm.R1, asm.Word),
		asm.StoreImm(asm.RFP, stVal, 1, asm.Word),
	)
	b.mapCall(asm.FnMapUpdateElem, mapPids, true, "")
	b.begin(evFork)
	b.add(
		asm.LoadMem(asm.R1, asm.R6, childOff, asm.Word),
		asm.StoreMem(asm.RFP, stEvent+offArg, asm.R1, asm.DWord),
	)
	b.output()
	b.epilogue()
}

// procExit: sched_process_exit. When the whole group is dead (groupDeadOff: the record's
// group_dead byte) an evExit with the task's exit code is written; then the exiting thread's
// own key goes (put there by its clone; the leader's is the group's, which stays while any
// thread lives), and with the group dead the group's key. The event goes first: once the map is
// empty the reader may stop, and it must find every event in the ring by then.
func (b *builder) procExit(groupDeadOff int16) {
	b.prologue()
	b.add(
		asm.LoadMem(asm.R1, asm.R6, groupDeadOff, asm.Byte),
		asm.JEq.Imm(asm.R1, 0, "keys"),
	)
	b.begin(evExit)
	b.add(asm.FnGetCurrentTask.Call(), asm.Mov.Reg(asm.R8, asm.R0))
	b.readKernel(stEvent+offRet, 4, asm.R8, b.o.taskExitCode, "code")
	b.add(asm.Mov.Imm(asm.R0, 0).WithSymbol("code"))
	b.output()
	b.add(
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("keys"),
		asm.RSh.Imm(asm.R1, 32),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.LSh.Imm(asm.R2, 32),
		asm.RSh.Imm(asm.R2, 32),
		asm.JEq.Reg(asm.R1, asm.R2, "group"),
	)
	b.tidKey()
	b.mapCall(asm.FnMapDeleteElem, mapPids, false, "")
	b.add(
		asm.LoadMem(asm.R1, asm.R6, groupDeadOff, asm.Byte).WithSymbol("group"),
		asm.JEq.Imm(asm.R1, 0, "out"),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.RSh.Imm(asm.R1, 32),
		asm.StoreMem(asm.RFP, stKey, asm.R1, asm.Word),
	)
	b.mapCall(asm.FnMapDeleteElem, mapPids, false, "")
	b.epilogue()
}
