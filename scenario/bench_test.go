package scenario

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse measures parsing a 10,000-line scenario with options and targets on each line.
func BenchmarkParse(b *testing.B) {
	var src strings.Builder
	src.WriteString("procs 8\nall: file@{file}\n")
	for i := range 5000 {
		fmt.Fprintf(&src, "%d-{last}: write@+%dms kind=ofd style=poll tries=3 interval=10ms range={id}:1\n", i%8, i)
		src.WriteString("0,2-4: release range={id}:1 # done\n")
	}
	text := src.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := Parse("bench", strings.NewReader(text), ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueues measures expanding the storm built-in for 64 lockers.
func BenchmarkQueues(b *testing.B) {
	s, err := Builtin("storm")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Queues(64, []string{"/tmp/f"}); err != nil {
			b.Fatal(err)
		}
	}
}
