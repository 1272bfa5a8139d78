package scenario

import (
	"errors"
	"strings"
	"testing"
)

// TestErrors checks that each kind of mistake is caught at the right place, with a one-line
// message. Each source is parsed and, when that works, expanded for 3 lockers.
func TestErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string // the error, without the "t:" name prefix
	}{
		{"", "1:1: scenario has no commands"},
		{"# only a comment\n", "2:1: scenario has no commands"},
		{"frob", "1:1: unknown command \"frob\""},
		{"0: frob@+1s", "1:4: unknown command \"frob\""},
		{"write bogus=1", "1:7: unknown option \"bogus\""},
		{"write kind=nfs", "1:12: kind \"nfs\" is not posix, ofd or flock"},
		{"write style=spin", "1:13: style \"spin\" is not wait, try or poll"},
		{"write kind=ofd kind=posix", "1:16: option kind given twice"},
		{"write fd=", "1:10: option fd has no value"},
		{"write fd=64", "1:10: fd \"64\" is not from 0 to 63"},
		{"write fd=-1", "1:10: fd \"-1\" is negative"},
		{"write fd=x", "1:10: fd \"x\" is not a number"},
		{"write tries=3", "1:7: tries needs style=poll"},
		{"write style=try interval=1s", "1:17: interval needs style=poll"},
		{"write style=poll tries=0", "1:24: tries \"0\" is not from 1 to 2147483647"},
		{"write style=poll interval=0s", "1:27: interval must be more than zero"},
		{"write style=poll interval=-1s", "1:27: interval \"-1s\" is negative"},
		{"write style=poll interval=5", "1:27: interval \"5\" needs a unit such as ms or s"},
		{"write range=1", "1:13: range \"1\" is not START:LEN"},
		{"write range=-1:2", "1:13: range start \"-1\" is negative"},
		{"write range=1:x", "1:15: range length \"x\" is not a number, {id}, {next} or {last}"},
		{"write range=1:", "1:15: range length is missing"},
		{"write range=9223372036854775807:1", "1:13: range \"9223372036854775807:1\" runs past the largest file offset"},
		{"write kind=flock range=0:1", "1:18: kind=flock locks the whole file: it takes no range"},
		{"getlk kind=flock", "1:7: getlk cannot ask about kind=flock: flock(2) has no query call"},
		{"getlk mode=exclusive", "1:12: mode \"exclusive\" is not read or write"},
		{"write mode=read", "1:7: write takes no option mode"},
		{"release style=wait", "1:9: release takes no option style"},
		{"stop kind=posix", "1:6: stop takes no option kind"},
		{"sleep 1s fd=1", "1:10: sleep takes no option fd"},
		{"close extra", "1:7: unexpected \"extra\": options are key=value"},
		{"write@1s", "1:7: time \"1s\" is not +DURATION, an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)"},
		{"write@+-1s", "1:8: time \"-1s\" is negative"},
		{"write@+soon", "1:8: time \"soon\" is not a duration"},
		{"write@2025-13-01T00:00:00Z", "1:7: time \"2025-13-01T00:00:00Z\" is not +DURATION, an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)"},
		{"sleep", "1:1: want sleep DURATION or sleep@MICROSECONDS"},
		{"sleep 450", "1:7: sleep \"450\" needs a unit; bare microseconds only in the seed's form sleep@450"},
		{"sleep -1s", "1:7: sleep \"-1s\" is negative"},
		{"sleep@99999999999999999999", "1:7: sleep \"99999999999999999999\" microseconds is too long"},
		{"file", "1:1: want file@PATH"},
		{"file@", "1:1: want file@PATH"},
		{"file@/tmp/{x}", "1:11: unknown template \"{x}\" in path: want {file}, {id}, {next} or {last}"},
		{"file@/tmp/{file", "1:11: '{' in path without '}': only {file}, {id}, {next} and {last} may appear"},
		{"file@{file}\n0,0: write", "2:3: locker 0 is named twice in the targets"},
		{"file@{file}\nnode=: write", "2:6: node=: want a node number or a range N-M"},
		{"file@{file}\nnode={last}: write", "2:6: node={last}: want a node number or a range N-M"},
		{"file@{file}\nnode=2-1: write", "2:6: node range \"2-1\" runs backwards"},
		{"file@{file}\n0,node=1: write", "2:3: target names node 1 but the run has one node (0)"},
		{"file@{file}\n0-2,1: write", "2:5: locker 1 is named twice in the targets"},
		{"2-1: write", "1:1: target range \"2-1\" runs backwards"},
		{"0,all: write", "1:3: all cannot be combined with other targets"},
		{"x: write", "1:1: target \"x\" is not all, a locker number or {last}"},
		{"0-: write", "1:3: missing locker number in targets"},
		{"{last}-1: write", "1:1: range \"{last}-1\" starts at {last}: write {last} alone"},
		{"99999: write", "1:1: locker 99999 is beyond the largest possible (65535)"},
		{": write", "1:1: empty target list before ':'"},
		{"0:", "1:3: 0: is followed by no command"},
		{"3: write", "1:1: target names locker 3 but there are only 3 lockers (0-2)"},
		{"file@{file}\nprocs 2", "2:1: header line \"procs\" after the first command; put header lines first"},
		{"procs 2\nprocs 3\nstop", "2:1: procs set twice"},
		{"procs 0\nstop", "1:7: procs \"0\" is not from 1 to 65536"},
		{"procs\nstop", "1:1: procs needs a value"},
		{"procs 2 3\nstop", "1:9: unexpected \"3\" after procs 2"},
		{"timeout 0s\nstop", "1:9: timeout must be more than zero"},
		{"kind lustre\nstop", "1:6: kind \"lustre\" is not posix, ofd or flock"},
		{"style sometimes\nstop", "1:7: style \"sometimes\" is not wait, try or poll"},
		{"tries 3\nstop", "1:1: tries needs style poll in the header before it"},
		{"style poll\ninterval x\nstop", "2:10: interval \"x\" is not a duration"},
		{"repeat 0 {\nstop\n}", "1:8: repeat count \"0\" is not a number from 1 to 1000000"},
		{"repeat 2\nstop", "1:1: want: repeat N {"},
		{"stop\n}", "2:1: } without repeat"},
		{"repeat 2 {\nwrite\n} x", "3:3: unexpected \"x\" after }"},
		{"repeat 2 {\nstop\n}", "2:1: locker 0 already stopped at line 2"},
		{"repeat 1000 {\nrepeat 1000 {\nwrite\n}\n}", "1:1: repeat makes more than 100000 commands"},
		{"file@{file}\nstop\n0: write", "3:1: locker 0 already stopped at line 2"},
		// Found by FuzzParse: a raw carriage return in a token reached the terminal.
		{"procs \r 0", "1:9: unexpected \"0\" after procs \\x0d"},
		{"procs \x1b[2J 0\nstop", "1:12: unexpected \"0\" after procs \\x1b[2J"},
		{"write@" + strings.Repeat("9", 900000), "1:7: time \"" + strings.Repeat("9", 64) + "…\" is not +DURATION, an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)"},
		{"file@/tmp/a\x00b", "1:12: path holds the control character '\\x00': a file name lockers can share has none"},
		{"write@2026-12-01 21:30", "1:7: time \"2026-12-01\" is not +DURATION, an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)"},
		{"write@2026-13-01 21:30:00", "1:7: time \"2026-13-01 21:30:00\" is not +DURATION, an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)"},
	}
	for _, tt := range tests {
		s, err := Parse("t", strings.NewReader(tt.src), ParseOptions{})
		if err == nil {
			_, err = s.Queues(3, []string{"/tmp/f"})
		}
		if err == nil {
			t.Errorf("%q: no error, want %s", tt.src, tt.want)
			continue
		}
		if got := err.Error(); got != "t:"+tt.want {
			t.Errorf("%q:\n got %s\nwant t:%s", tt.src, got, tt.want)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: error %T is not an *Error", tt.src, err)
		}
	}
}

func TestQueuesArguments(t *testing.T) {
	s, err := Parse("t", strings.NewReader("file@{file}\n"), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, procs := range []int{0, -1, MaxProcs + 1} {
		if _, err := s.Queues(procs, []string{"f"}); err == nil {
			t.Errorf("Queues(%d): no error", procs)
		}
	}
	if _, err := s.Queues(1, nil); err == nil || !strings.Contains(err.Error(), "no file was given") {
		t.Errorf("Queues without files: %v", err)
	}
}

func TestMaxCommands(t *testing.T) {
	src := "repeat 10 {\nwrite\nrelease\n}\n"
	if _, err := Parse("t", strings.NewReader(src), ParseOptions{MaxCommands: 20}); err != nil {
		t.Errorf("20 commands with MaxCommands 20: %v", err)
	}
	if _, err := Parse("t", strings.NewReader(src), ParseOptions{MaxCommands: 19}); err == nil {
		t.Errorf("20 commands with MaxCommands 19: no error")
	}
}
