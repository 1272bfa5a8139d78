package probe

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/semconv"
)

// lockReq is one lock or unlock call.
type lockReq struct {
	kind  semconv.Kind
	mode  semconv.Mode // read | write; none for unlock
	start int64
	len   int64
	wait  bool
}

func lockType(mode semconv.Mode) int16 {
	switch mode {
	case semconv.ModeRead:
		return unix.F_RDLCK
	case semconv.ModeWrite:
		return unix.F_WRLCK
	}
	return unix.F_UNLCK
}

// setLock makes the lock call itself. It is the only place lock state changes.
func setLock(fd int, r lockReq) error {
	switch r.kind {
	case semconv.KindPOSIX, semconv.KindOFD:
		cmd := unix.F_SETLK
		if r.kind == semconv.KindOFD {
			cmd = unix.F_OFD_SETLK
			if r.wait {
				cmd = unix.F_OFD_SETLKW
			}
		} else if r.wait {
			cmd = unix.F_SETLKW
		}
		fl := unix.Flock_t{Type: lockType(r.mode), Whence: 0, Start: r.start, Len: r.len}
		for {
			err := unix.FcntlFlock(uintptr(fd), cmd, &fl)
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	case semconv.KindFlock:
		how := unix.LOCK_UN
		switch r.mode {
		case semconv.ModeRead:
			how = unix.LOCK_SH
		case semconv.ModeWrite:
			how = unix.LOCK_EX
		}
		if !r.wait && how != unix.LOCK_UN {
			how |= unix.LOCK_NB
		}
		for {
			err := unix.Flock(fd, how)
			if !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	}
	return fmt.Errorf("unknown lock kind %s", r.kind)
}

// outcomeOf maps a lock call's error to an attempt outcome and errno name.
func outcomeOf(err error) (outcome semconv.Outcome, errno string) {
	if err == nil {
		return semconv.OutcomeGranted, ""
	}
	var en unix.Errno
	if errors.As(err, &en) {
		errno = unix.ErrnoName(en)
		switch en {
		case unix.EAGAIN, unix.EACCES:
			return semconv.OutcomeWouldBlock, errno
		case unix.EDEADLK:
			return semconv.OutcomeDeadlock, errno
		}
		return semconv.OutcomeError, errno
	}
	return semconv.OutcomeError, err.Error()
}

// getLock asks F_GETLK (F_OFD_GETLK for ofd) what would block r. found is false when nothing
// would. flock has no such call: the caller reads /proc/locks instead.
func getLock(fd int, r lockReq) (fl unix.Flock_t, found bool, err error) {
	cmd := unix.F_GETLK
	if r.kind == semconv.KindOFD {
		cmd = unix.F_OFD_GETLK
	}
	fl = unix.Flock_t{Type: lockType(r.mode), Whence: 0, Start: r.start, Len: r.len}
	if err := unix.FcntlFlock(uintptr(fd), cmd, &fl); err != nil {
		return fl, false, err
	}
	return fl, fl.Type != unix.F_UNLCK, nil
}

func modeOfType(t int16) semconv.Mode {
	switch t {
	case unix.F_RDLCK:
		return semconv.ModeRead
	case unix.F_WRLCK:
		return semconv.ModeWrite
	}
	return semconv.ModeNone
}
