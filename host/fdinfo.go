package host

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// fdinfoLockPrefix starts each lock line in /proc/PID/fdinfo/FD.
const fdinfoLockPrefix = "lock:"

// ParseFDInfoLocks returns the locks listed in /proc/PID/fdinfo/FD text:
// the "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:1234 0 EOF" lines the
// kernel prints for every lock held through that open file (the way lslocks
// names the owner of an OFD lock, which /proc/locks shows as pid -1). Other
// lines are ignored; a malformed lock line is an error naming its line.
func ParseFDInfoLocks(r io.Reader) ([]LockEntry, error) {
	var out []LockEntry
	sc := bufio.NewScanner(r)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line, ok := strings.CutPrefix(sc.Text(), fdinfoLockPrefix)
		if !ok {
			continue
		}
		e, err := parseLockLine(line)
		if err != nil {
			return out, fmt.Errorf("host: fdinfo line %d: %w", lineNo, err)
		}
		e.Line = lineNo
		// The kernel prints no waiters here (depth is always 0), but a
		// stray "->" must not make a waiter without a holder.
		if e.Waiter {
			return out, fmt.Errorf("host: fdinfo line %d: unexpected waiter: %q", lineNo, line)
		}
		e.Raw = strings.TrimLeft(line, "\t ")
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("host: read fdinfo: %w", err)
	}
	return out, nil
}

// FDLocks returns the locks held through descriptor fd of process pid, from
// /proc/PID/fdinfo/FD. Reading another user's fdinfo needs ptrace access.
func FDLocks(pid, fd int) ([]LockEntry, error) {
	path := fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	defer f.Close()
	locks, err := ParseFDInfoLocks(f)
	if err != nil {
		return locks, fmt.Errorf("%s: %w", path, err)
	}
	return locks, nil
}
