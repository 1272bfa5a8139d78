package host

// Request is a lock request as /proc/locks would print it: the class (POSIX, OFDLCK, FLOCK),
// mode (READ, WRITE) and the inclusive range [Start, End], End EOF (-1) for to-the-end.
type Request struct {
	File       FileID
	Class      string
	Mode       string
	Start, End int64
}

// RequestRange converts a start and a length (0: to the end of the file) into /proc/locks'
// inclusive [start, end].
func RequestRange(start, length int64) (int64, int64) {
	if length <= 0 {
		return start, EOF
	}
	return start, start + length - 1
}

// Conflicting returns the holder lines of entries that exclude req: on the same file, in
// the same lock table (flock apart from POSIX and OFD, which share one), at least one of the
// two a write lock, overlapping ranges (flock: the whole file). mine says which lines are the
// requester's own (its POSIX pid, its OFD descriptor's lines): a lock never conflicts with
// its owner's. Lines come in the kernel's order.
func Conflicting(entries []LockEntry, req Request, mine func(LockEntry) bool) []LockEntry {
	var out []LockEntry
	for _, e := range entries {
		if e.Waiter || e.File() != req.File || (e.Class == "FLOCK") != (req.Class == "FLOCK") {
			continue
		}
		if e.Mode != "WRITE" && req.Mode != "WRITE" {
			continue
		}
		if e.Class != "FLOCK" && !rangesMeet(e.Start, e.End, req.Start, req.End) {
			continue
		}
		if mine != nil && mine(e) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func rangesMeet(s1, e1, s2, e2 int64) bool {
	end := func(e int64) int64 {
		if e == EOF {
			return 1<<63 - 1
		}
		return e
	}
	return s1 <= end(e2) && s2 <= end(e1)
}
