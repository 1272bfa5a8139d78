package sampler

import (
	"encoding/binary"
	"os"
	"path/filepath"
)

// casacore's table.lock starts with the table's request list: the processes that want the
// table's lock and do not have it yet write themselves there while they poll (F_SETLK a second
// apart, ~29 times) and wait — a big-endian count, then (pid, host id) pairs, 32 at most (260
// bytes). Between tries such a process is in no lock call, so the list is the one place that
// names it; `who` shows its entries as requesters.

// Request is one entry of a casacore request list.
type Request struct {
	PID, HostID int32
}

const (
	casacoreLockName = "table.lock"
	casacoreMaxReqs  = 32
)

// CasacoreRequests reads the request list of a casacore lock file; nil for any other file,
// or a list that does not look like one.
func CasacoreRequests(path string) []Request {
	if filepath.Base(path) != casacoreLockName {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, 4+8*casacoreMaxReqs)
	n, _ := f.ReadAt(b, 0)
	return parseRequests(b[:n])
}

func parseRequests(b []byte) []Request {
	if len(b) < 4 {
		return nil
	}
	be := binary.BigEndian
	count := int32(be.Uint32(b))
	if count <= 0 || count > casacoreMaxReqs || len(b) < 4+8*int(count) {
		return nil
	}
	out := make([]Request, 0, count)
	for i := range int(count) {
		r := Request{PID: int32(be.Uint32(b[4+8*i:])), HostID: int32(be.Uint32(b[8+8*i:]))}
		if r.PID <= 0 {
			return nil
		}
		out = append(out, r)
	}
	return out
}
