package simfs

import (
	"strings"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Fault
		err  string
	}{
		{spec: "drop-grant:node=1", want: Fault{Kind: FaultDropGrant, Node: 1}},
		{spec: "drop-grant", want: Fault{Kind: FaultDropGrant, Node: AnyNode}},
		{spec: "evict:node=0,after=3s", want: Fault{Kind: FaultEvict, Node: 0, After: 3 * time.Second}},
		{spec: "evict:node=0,after=0", want: Fault{Kind: FaultEvict, Node: 0}},
		{spec: "evict:node=2,on=block,after=500ms", want: Fault{Kind: FaultEvict, Node: 2, On: TriggerBlock, After: 500 * time.Millisecond}},
		{spec: "delay-grant:d=2s", want: Fault{Kind: FaultDelayGrant, Node: AnyNode, Delay: 2 * time.Second}},
		{spec: "delay-grant=2s", want: Fault{Kind: FaultDelayGrant, Node: AnyNode, Delay: 2 * time.Second}},
		{spec: "delay-grant=2s:node=1", want: Fault{Kind: FaultDelayGrant, Node: 1, Delay: 2 * time.Second}},
		{spec: "ghost:node=0,count=1", want: Fault{Kind: FaultGhost, Node: 0, Count: 1}},
		{spec: "no-deadlock-detect", want: Fault{Kind: FaultNoDeadlockDetect, Node: AnyNode}},
		{spec: "first-blocker-only:after=1s", want: Fault{Kind: FaultFirstBlockerOnly, Node: AnyNode, After: time.Second}},
		{spec: "drop-grants", err: `unknown kind "drop-grants"`},
		{spec: "", err: "unknown kind"},
		{spec: "drop-grant:", err: "not key=value"},
		{spec: "drop-grant:node", err: "not key=value"},
		{spec: "drop-grant:node=x", err: "not a number"},
		{spec: "drop-grant:node=-1", err: "not a number"},
		{spec: "drop-grant:node=1,node=2", err: "given twice"},
		{spec: "drop-grant:d=1s", err: `takes no "d"`},
		{spec: "ghost:on=block", err: `takes no "on"`},
		{spec: "evict:on=grant,node=1", err: "unknown trigger"},
		{spec: "evict", err: "needs node=N"},
		{spec: "evict:node=1", err: "needs after=DURATION or on=block"},
		{spec: "delay-grant", err: "needs d=DURATION"},
		{spec: "delay-grant:d=0s", err: "needs d=DURATION"},
		{spec: "evict:node=1,after=-1s", err: "not a duration"},
	} {
		got, err := ParseFault(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseFault(%q) = %v, %v; want an error with %q", tc.spec, got, err, tc.err)
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseFault(%q): error of several lines: %q", tc.spec, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			continue
		}
		again, err := ParseFault(got.String())
		if err != nil || again != got {
			t.Errorf("ParseFault(%q).String() = %q does not parse back: %+v, %v", tc.spec, got.String(), again, err)
		}
	}
}

func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"drop-grant:node=1", "evict:node=0,after=3s", "delay-grant=2s", "ghost:count=1", "evict:on=block,node=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := ParseFault(spec)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") && !strings.ContainsAny(spec, "\n\r") {
				t.Fatalf("error of several lines: %q", err)
			}
			return
		}
		again, err := ParseFault(got.String())
		if err != nil || again != got {
			t.Fatalf("%q → %+v → %q → %+v, %v", spec, got, got.String(), again, err)
		}
	})
}

func TestModes(t *testing.T) {
	for _, m := range []Mode{ModeFlock, ModeLocalflock, ModeNoflock} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	for _, d := range []Detect{DetectFirst, DetectAll, DetectOff} {
		if got, err := ParseDetect(d.String()); err != nil || got != d {
			t.Errorf("ParseDetect(%q) = %v, %v", d, got, err)
		}
	}
	if _, err := ParseMode("global"); err == nil || !strings.Contains(err.Error(), "flock, localflock, noflock") {
		t.Errorf("ParseMode(global): %v", err)
	}
}
