package lockcall

import (
	"encoding/binary"
	"testing"

	"github.com/lockprobe/lockprobe/semconv"
)

func flockBytes(typ, whence int16, start, length int64, pid int32) []byte {
	b := make([]byte, FlockSize)
	binary.LittleEndian.PutUint16(b[0:], uint16(typ))
	binary.LittleEndian.PutUint16(b[2:], uint16(whence))
	binary.LittleEndian.PutUint64(b[8:], uint64(start))
	binary.LittleEndian.PutUint64(b[16:], uint64(length))
	binary.LittleEndian.PutUint32(b[24:], uint32(pid))
	return b
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		arch  Arch
		nr    int64
		args  [6]uint64
		flock []byte
		ok    bool
		want  Call
		text  string
	}{
		{"setlkw write", AMD64, 72, [6]uint64{6, 7, 0x7fff0}, flockBytes(FWrlck, 0, 0, 1, 0), true,
			Call{Op: OpLock, Kind: semconv.KindPOSIX, Mode: semconv.ModeWrite, Wait: true, FD: 6, Addr: 0x7fff0, Len: 1, HaveFlock: true},
			"fcntl(6, F_SETLKW, {F_WRLCK, start=0, len=1})"},
		{"setlk unlock", AMD64, 72, [6]uint64{5, 6, 0x10}, flockBytes(FUnlck, 0, 1, 2, 0), true,
			Call{Op: OpUnlock, Kind: semconv.KindPOSIX, Mode: semconv.ModeNone, FD: 5, Addr: 0x10, Start: 1, Len: 2, HaveFlock: true},
			"fcntl(5, F_SETLK, {F_UNLCK, start=1, len=2})"},
		{"ofd getlk", AMD64, 72, [6]uint64{3, 36, 0x20}, flockBytes(FRdlck, 0, 0, 0, -1), true,
			Call{Op: OpGetlk, Kind: semconv.KindOFD, Mode: semconv.ModeRead, FD: 3, Addr: 0x20, PID: -1, HaveFlock: true},
			"fcntl(3, F_OFD_GETLK, {F_RDLCK, start=0, len=0})"},
		{"ofd setlk arm64", ARM64, 25, [6]uint64{3, 37, 0x20}, flockBytes(FRdlck, 0, 4, 0, 0), true,
			Call{Op: OpLock, Kind: semconv.KindOFD, Mode: semconv.ModeRead, FD: 3, Addr: 0x20, Start: 4, HaveFlock: true},
			"fcntl(3, F_OFD_SETLK, {F_RDLCK, start=4, len=0})"},
		{"fcntl getfd is no lock call", AMD64, 72, [6]uint64{3, 1}, nil, false, Call{}, ""},
		{"flock ex nb", AMD64, 73, [6]uint64{4, 2 | 4}, nil, true,
			Call{Op: OpLock, Kind: semconv.KindFlock, Mode: semconv.ModeWrite, FD: 4, HaveFlock: true}, "flock(4, LOCK_EX|LOCK_NB)"},
		{"flock sh waits", ARM64, 32, [6]uint64{4, 1}, nil, true,
			Call{Op: OpLock, Kind: semconv.KindFlock, Mode: semconv.ModeRead, Wait: true, FD: 4, HaveFlock: true}, "flock(4, LOCK_SH)"},
		{"flock un", AMD64, 73, [6]uint64{4, 8}, nil, true,
			Call{Op: OpUnlock, Kind: semconv.KindFlock, Mode: semconv.ModeNone, FD: 4, HaveFlock: true}, "flock(4, LOCK_UN)"},
		{"flock no op", AMD64, 73, [6]uint64{4, 0}, nil, false, Call{}, ""},
		{"close", AMD64, 3, [6]uint64{9}, nil, true, Call{Op: OpClose, FD: 9}, "close(9)"},
		{"dup2", AMD64, 33, [6]uint64{3, 9}, nil, true, Call{Op: OpDup, FD: 3, NewFD: 9}, "dup(3, 9)"},
		{"no dup2 on arm64", ARM64, 33, [6]uint64{3, 9}, nil, false, Call{}, ""},
		{"close_range to end", AMD64, 436, [6]uint64{3, 0xffffffff}, nil, true, Call{Op: OpCloseRange, FD: 3, Last: 1 << 30}, "close_range(3, 1073741824)"},
		{"read is not", AMD64, 0, [6]uint64{3}, nil, false, Call{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := Decode(tc.arch, tc.nr, tc.args)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if tc.flock != nil {
				if err := c.SetFlock(tc.flock); err != nil {
					t.Fatal(err)
				}
			}
			if c != tc.want {
				t.Errorf("got  %+v\nwant %+v", c, tc.want)
			}
			if ok && c.Text() != tc.text {
				t.Errorf("text %q, want %q", c.Text(), tc.text)
			}
		})
	}
}

func TestSetFlockRejects(t *testing.T) {
	c := Call{Op: OpLock}
	if err := c.SetFlock(make([]byte, 8)); err == nil {
		t.Error("short struct accepted")
	}
	if err := c.SetFlock(flockBytes(7, 0, 0, 0, 0)); err == nil {
		t.Error("l_type 7 accepted")
	}
	if err := c.SetFlock(flockBytes(FRdlck, 3, 0, 0, 0)); err == nil {
		t.Error("l_whence 3 accepted")
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		whence             int16
		start, length      int64
		offset, size       int64
		wantStart, wantLen int64
		ok                 bool
	}{
		{0, 5, 2, 100, 1000, 5, 2, true},
		{1, 5, 2, 100, 1000, 105, 2, true},
		{2, -10, 0, 100, 1000, 990, 0, true},
		{0, 10, -4, 0, 0, 6, 4, true},
		{0, 2, -4, 0, 0, -2, 4, false},
	} {
		c := Call{Whence: tc.whence, Start: tc.start, Len: tc.length}
		ok := c.Resolve(tc.offset, tc.size)
		if ok != tc.ok || (ok && (c.Start != tc.wantStart || c.Len != tc.wantLen)) {
			t.Errorf("%+v: got %d+%d ok %v, want %d+%d ok %v", tc, c.Start, c.Len, ok, tc.wantStart, tc.wantLen, tc.ok)
		}
	}
}

func TestParseProcSyscall(t *testing.T) {
	p, err := ParseProcSyscall("72 0x6 0x7 0x7fff7f25d460 0x0 0x17e 0x2c478bf0 0x7fff7f25d3f0 0x7f23555d3810\n")
	if err != nil {
		t.Fatal(err)
	}
	if !p.InCall || p.Nr != 72 || p.Args[0] != 6 || p.Args[1] != 7 || p.Args[2] != 0x7fff7f25d460 {
		t.Errorf("got %+v", p)
	}
	if p, err := ParseProcSyscall("running"); err != nil || !p.Running || p.InCall {
		t.Errorf("running: %+v %v", p, err)
	}
	if p, err := ParseProcSyscall("-1 0x7ffd 0x4005"); err != nil || p.InCall {
		t.Errorf("-1: %+v %v", p, err)
	}
	for _, bad := range []string{"", "x", "72 0x1", "72 0x1 0x2 0x3 0x4 0x5 zz 0x7 0x8", "-1"} {
		if _, err := ParseProcSyscall(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseProcSyscall(f *testing.F) {
	f.Add("72 0x6 0x7 0x7fff7f25d460 0x0 0x17e 0x2c478bf0 0x7fff7f25d3f0 0x7f23555d3810")
	f.Add("running")
	f.Add("-1 0x1 0x2")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProcSyscall(s)
		if err == nil && p.InCall {
			if _, ok := Decode(AMD64, p.Nr, p.Args); ok {
				_ = p
			}
		}
	})
}
