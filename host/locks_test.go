package host

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseLocks(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []LockEntry // Raw is checked separately
		err  string      // substring of the error, "" for none
	}{
		{
			name: "posix holder and waiter",
			in: "1: POSIX  ADVISORY  WRITE 4711 08:01:1234 0 EOF\n" +
				"1: -> POSIX  ADVISORY  WRITE 4712 08:01:1234 0 EOF\n",
			want: []LockEntry{
				{ID: 1, Class: "POSIX", Type: "ADVISORY", Mode: "WRITE", PID: 4711, DevMajor: 8, DevMinor: 1, Inode: 1234, End: EOF, Line: 1},
				{ID: 1, Class: "POSIX", Type: "ADVISORY", Mode: "WRITE", PID: 4712, DevMajor: 8, DevMinor: 1, Inode: 1234, End: EOF,
					Waiter: true, Depth: 1, BlockedBy: 1, Line: 2, ParentLine: 1},
			},
		},
		{
			name: "nested waiters, ofd, flock, lease, range, hex device",
			in: "1: OFDLCK ADVISORY  READ -1 fe:00:9995184 100 199\n" +
				"1: -> OFDLCK ADVISORY  WRITE -1 fe:00:9995184 0 EOF\n" +
				"1:  -> OFDLCK ADVISORY  WRITE -1 fe:00:9995184 150 160\n" +
				"1: -> POSIX  ADVISORY  WRITE 9 fe:00:9995184 120 EOF\n" +
				"2: FLOCK  ADVISORY  WRITE 33 00:2a:7 0 EOF\n" +
				"3: LEASE  BREAKING  UNLCK 44 103:02:88 0 EOF\n" +
				"4: DELEG  ACTIVE    READ 55 00:31:99 0 EOF\n",
			want: []LockEntry{
				{ID: 1, Class: "OFDLCK", Type: "ADVISORY", Mode: "READ", PID: -1, DevMajor: 0xfe, Inode: 9995184, Start: 100, End: 199, Line: 1},
				{ID: 1, Class: "OFDLCK", Type: "ADVISORY", Mode: "WRITE", PID: -1, DevMajor: 0xfe, Inode: 9995184, End: EOF,
					Waiter: true, Depth: 1, BlockedBy: 1, Line: 2, ParentLine: 1},
				{ID: 1, Class: "OFDLCK", Type: "ADVISORY", Mode: "WRITE", PID: -1, DevMajor: 0xfe, Inode: 9995184, Start: 150, End: 160,
					Waiter: true, Depth: 2, BlockedBy: 1, Line: 3, ParentLine: 2},
				{ID: 1, Class: "POSIX", Type: "ADVISORY", Mode: "WRITE", PID: 9, DevMajor: 0xfe, Inode: 9995184, Start: 120, End: EOF,
					Waiter: true, Depth: 1, BlockedBy: 1, Line: 4, ParentLine: 1},
				{ID: 2, Class: "FLOCK", Type: "ADVISORY", Mode: "WRITE", PID: 33, DevMinor: 0x2a, Inode: 7, End: EOF, Line: 5},
				{ID: 3, Class: "LEASE", Type: "BREAKING", Mode: "UNLCK", PID: 44, DevMajor: 0x103, DevMinor: 2, Inode: 88, End: EOF, Line: 6},
				{ID: 4, Class: "DELEG", Type: "ACTIVE", Mode: "READ", PID: 55, DevMinor: 0x31, Inode: 99, End: EOF, Line: 7},
			},
		},
		{
			name: "old kernels: msnfs, mandatory, access, noinode, blank line",
			in: "7: FLOCK  MSNFS     RW    12 08:01:5 0 EOF\n\n" +
				"8: POSIX  MANDATORY WRITE 13 08:01:6 0 EOF\n" +
				"9: ACCESS ADVISORY  READ 14 08:01:7 0 EOF\n" +
				"10: POSIX  *NOINODE* WRITE 15 <none>:0 0 EOF",
			want: []LockEntry{
				{ID: 7, Class: "FLOCK", Type: "MSNFS", Mode: "RW", PID: 12, DevMajor: 8, DevMinor: 1, Inode: 5, End: EOF, Line: 1},
				{ID: 8, Class: "POSIX", Type: "MANDATORY", Mode: "WRITE", PID: 13, DevMajor: 8, DevMinor: 1, Inode: 6, End: EOF, Line: 3},
				{ID: 9, Class: "ACCESS", Type: "ADVISORY", Mode: "READ", PID: 14, DevMajor: 8, DevMinor: 1, Inode: 7, End: EOF, Line: 4},
				{ID: 10, Class: "POSIX", Type: "*NOINODE*", Mode: "WRITE", PID: 15, End: EOF, Line: 5},
			},
		},
		{name: "empty", in: "", want: nil},
		{name: "waiter first", in: "1: -> POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n", err: "line 1: waiter at depth 1 has no blocker"},
		{name: "waiter of other id", in: "1: POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n2: -> POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n", err: "line 2"},
		{name: "depth skips a level", in: "1: POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n1:  -> POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n", err: "depth 2"},
		{name: "missing field", in: "1: POSIX  ADVISORY  WRITE 1 08:01:2 0\n", err: "line 1: malformed lock line: 6 fields"},
		{name: "extra field", in: "1: POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF x\n", err: "8 fields"},
		{name: "bad id", in: "x: POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n", err: "id"},
		{name: "no colon", in: "POSIX  ADVISORY  WRITE 1 08:01:2 0 EOF\n", err: "id"},
		{name: "bad pid", in: "1: POSIX  ADVISORY  WRITE p 08:01:2 0 EOF\n", err: "pid"},
		{name: "bad device", in: "1: POSIX  ADVISORY  WRITE 1 08:zz:2 0 EOF\n", err: "device"},
		{name: "device without inode", in: "1: POSIX  ADVISORY  WRITE 1 08:01 0 EOF\n", err: "device"},
		{name: "bad start", in: "1: POSIX  ADVISORY  WRITE 1 08:01:2 s EOF\n", err: "start"},
		{name: "bad end", in: "1: POSIX  ADVISORY  WRITE 1 08:01:2 0 E\n", err: "end"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLocks(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(tc.in, "\n")
			for i := range got {
				if got[i].Raw != lines[got[i].Line-1] {
					t.Errorf("entry %d Raw = %q, want %q", i, got[i].Raw, lines[got[i].Line-1])
				}
				got[i].Raw = ""
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestGroupAndFilter(t *testing.T) {
	in := "1: POSIX  ADVISORY  WRITE 10 08:01:5 0 EOF\n" +
		"1: -> POSIX  ADVISORY  WRITE 11 08:01:5 0 EOF\n" +
		"1:  -> POSIX  ADVISORY  READ 12 08:01:5 0 EOF\n" +
		"2: FLOCK  ADVISORY  WRITE 20 08:01:6 0 EOF\n" +
		"3: POSIX  ADVISORY  READ 30 08:01:5 10 19\n" +
		"3: -> FLOCK  ADVISORY  WRITE 31 08:01:5 0 EOF\n"
	entries, err := ParseLocks(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	groups := GroupLocks(FilterFile(entries, FileID{Major: 8, Minor: 1, Inode: 5}))
	var got []string
	for _, g := range groups {
		s := fmt.Sprint(g.Holder.PID, ":")
		for _, w := range g.Waiters {
			s += fmt.Sprintf(" %d(after line %d)", w.PID, w.ParentLine)
		}
		got = append(got, s)
	}
	want := []string{"10: 11(after line 1) 12(after line 2)", "30: 31(after line 5)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("groups = %q, want %q", got, want)
	}
	if s := (FileID{Major: 0xfe, Minor: 0, Inode: 42}).String(); s != "fe:00:42" {
		t.Errorf("FileID.String = %q", s)
	}
}

func TestParseFDInfoLocks(t *testing.T) {
	in := "pos:\t0\nflags:\t02\nmnt_id:\t27\nino:\t9995184\n" +
		"lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:9995184 0 EOF\n" +
		"lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:9995184 10 20\n"
	got, err := ParseFDInfoLocks(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Mode != "WRITE" || got[1].Start != 10 || got[1].End != 20 || got[0].Line != 5 ||
		got[0].Raw != "1: OFDLCK ADVISORY  WRITE -1 fe:00:9995184 0 EOF" {
		t.Errorf("got %+v", got)
	}
	for _, bad := range []string{"lock:\t1: OFDLCK\n", "lock:\t1: -> OFDLCK ADVISORY  WRITE -1 fe:00:1 0 EOF\n"} {
		if _, err := ParseFDInfoLocks(strings.NewReader("pos:\t0\n" + bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ParseFDInfoLocks(%q) err = %v, want a line 2 error", bad, err)
		}
	}
}

func FuzzParseLocks(f *testing.F) {
	f.Add("1: POSIX  ADVISORY  WRITE 4711 08:01:1234 0 EOF\n1: -> POSIX  ADVISORY  WRITE 4712 08:01:1234 0 EOF\n")
	f.Add("1: OFDLCK ADVISORY  READ -1 fe:00:9 100 199\n1:  -> FLOCK  ADVISORY  WRITE 1 0:0:0 0 EOF\n")
	f.Add("10: POSIX  *NOINODE* WRITE 15 <none>:0 0 EOF")
	f.Add("\n\n3: LEASE  BREAKER   UNLCK 44 103:02:88 0 EOF\n")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParseLocks(strings.NewReader(in))
		if err != nil {
			return
		}
		for i, e := range entries {
			if e.Waiter != (e.Depth > 0) || e.Waiter != (e.ParentLine > 0) || e.ParentLine >= e.Line {
				t.Fatalf("entry %d inconsistent: %+v", i, e)
			}
			if !strings.Contains(in, e.Raw) {
				t.Fatalf("entry %d Raw %q not in input", i, e.Raw)
			}
		}
		n := 0
		for _, g := range GroupLocks(entries) {
			n += 1 + len(g.Waiters)
		}
		if n != len(entries) {
			t.Fatalf("groups hold %d entries, parsed %d", n, len(entries))
		}
	})
}

// benchLocks is 1000 lines: 250 holders with three waiters each, some nested.
func benchLocks() string {
	var b strings.Builder
	for i := 1; i <= 250; i++ {
		fmt.Fprintf(&b, "%d: POSIX  ADVISORY  WRITE %d fe:00:%d 0 EOF\n", i, 1000+i, 9990000+i)
		fmt.Fprintf(&b, "%d: -> OFDLCK ADVISORY  READ -1 fe:00:%d 100 199\n", i, 9990000+i)
		fmt.Fprintf(&b, "%d:  -> POSIX  ADVISORY  WRITE %d fe:00:%d 0 EOF\n", i, 2000+i, 9990000+i)
		fmt.Fprintf(&b, "%d: -> FLOCK  ADVISORY  WRITE %d fe:00:%d 0 EOF\n", i, 3000+i, 9990000+i)
	}
	return b.String()
}

func BenchmarkParseLocks(b *testing.B) {
	in := benchLocks()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		entries, err := ParseLocks(strings.NewReader(in))
		if err != nil || len(entries) != 1000 {
			b.Fatal(len(entries), err)
		}
	}
}

// BenchmarkReadLocks reads the host's real /proc/locks (what the locker
// does at ~10 Hz); its cost depends on how many locks the host has.
func BenchmarkReadLocks(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadLocks(); err != nil {
			b.Fatal(err)
		}
	}
}
