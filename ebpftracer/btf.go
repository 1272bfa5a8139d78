package ebpftracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// offsets are the byte offsets of the kernel structure members the program follows from the
// current task to the open file behind a descriptor, read from the running kernel's BTF
// (/sys/kernel/btf/vmlinux) when the program is built: CO-RE done by hand, so that no compiler
// and no object file built for one kernel are needed.
type offsets struct {
	taskFiles, taskExitCode    int32 // task_struct.files, .exit_code
	filesFdt                   int32 // files_struct.fdt
	fdtMaxFds, fdtFd           int32 // fdtable.max_fds, .fd
	fileInode, filePos, fileRf int32 // file.f_inode, .f_pos, .f_ref (or .f_count)
	inodeIno, inodeSize        int32 // inode.i_ino, .i_size
	inodeSb                    int32 // inode.i_sb
	sbDev                      int32 // super_block.s_dev
	// refIsFileRef says the reference count is a file_ref_t (Linux ≥ 6.13), which stores the
	// count less one; before, f_count held the count itself.
	refIsFileRef bool
}

func kernelOffsets(spec *btf.Spec) (offsets, error) {
	var o offsets
	var errs []error
	get := func(st, member string) int32 {
		off, err := memberOffset(spec, st, member)
		if err != nil {
			errs = append(errs, err)
		}
		return off
	}
	o.taskFiles = get("task_struct", "files")
	o.taskExitCode = get("task_struct", "exit_code")
	o.filesFdt = get("files_struct", "fdt")
	o.fdtMaxFds = get("fdtable", "max_fds")
	o.fdtFd = get("fdtable", "fd")
	o.fileInode = get("file", "f_inode")
	o.filePos = get("file", "f_pos")
	if off, err := memberOffset(spec, "file", "f_ref"); err == nil {
		o.fileRf, o.refIsFileRef = off, true
	} else {
		o.fileRf = get("file", "f_count")
	}
	o.inodeIno = get("inode", "i_ino")
	o.inodeSize = get("inode", "i_size")
	o.inodeSb = get("inode", "i_sb")
	o.sbDev = get("super_block", "s_dev")
	return o, errors.Join(errs...)
}

// memberOffset finds member name of struct st, also inside anonymous unions and structs.
func memberOffset(spec *btf.Spec, st, name string) (int32, error) {
	var s *btf.Struct
	if err := spec.TypeByName(st, &s); err != nil {
		return 0, fmt.Errorf("kernel BTF: struct %s: %w", st, err)
	}
	if off, ok := findMember(s.Members, name, 0); ok {
		return int32(off / 8), nil
	}
	return 0, fmt.Errorf("kernel BTF: struct %s has no member %s", st, name)
}

func findMember(ms []btf.Member, name string, base btf.Bits) (btf.Bits, bool) {
	for _, m := range ms {
		if m.Name == name {
			return base + m.Offset, true
		}
		if m.Name != "" {
			continue
		}
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			if off, ok := findMember(t.Members, name, base+m.Offset); ok {
				return off, true
			}
		case *btf.Union:
			if off, ok := findMember(t.Members, name, base+m.Offset); ok {
				return off, true
			}
		}
	}
	return 0, false
}
