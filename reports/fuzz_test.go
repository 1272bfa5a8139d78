package reports

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// FuzzHTMLEscaping puts arbitrary text everywhere the run's text goes and checks that the page
// keeps its one script and gains no element or event handler from it.
func FuzzHTMLEscaping(f *testing.F) {
	for _, s := range []string{"<script>alert(1)</script>", "</style><b>", "\"'><svg onload=x>", "]]><!--", "{{.}}", "\x00\xff"} {
		f.Add(s)
	}
	base := resultOf(f, hostile)
	f.Fuzz(func(t *testing.T, s string) {
		res := *base
		res.Run.Command, res.Run.ScenarioText, res.Run.Scenario = s, s, s
		res.Lockers = append(res.Lockers[:0:0], res.Lockers...)
		for i := range res.Lockers {
			res.Lockers[i].Node = s
		}
		res.Attempts = append(res.Attempts[:0:0], res.Attempts...)
		for i, a := range res.Attempts {
			c := *a // the base result's attempts stay as they were
			c.File, c.CmdText = s, s
			res.Attempts[i] = &c
		}
		var buf bytes.Buffer
		if err := HTML(&buf, &res, Options{Version: s, Killed: []string{s}}); err != nil {
			t.Fatal(err)
		}
		doc, err := html.Parse(&buf)
		if err != nil {
			t.Fatal(err)
		}
		scripts := 0
		var walk func(n *html.Node)
		walk = func(n *html.Node) {
			if n.Type == html.ElementNode {
				if n.Data == "script" {
					scripts++
				}
				for _, a := range n.Attr {
					if strings.HasPrefix(a.Key, "on") {
						t.Fatalf("event handler %s=%q from %q", a.Key, a.Val, s)
					}
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c)
			}
		}
		walk(doc)
		if scripts != 1 {
			t.Fatalf("%d scripts with %q", scripts, s)
		}
	})
}

func TestStatusLine(t *testing.T) {
	got := StatusLine(LiveStatus{Elapsed: 12340 * time.Millisecond, Lockers: 8, Holding: 1, Waiting: 7, LongestWait: 3 * time.Second, LongestWaiter: 3})
	want := "12.3 s · 8 lockers: 1 holding, 7 waiting · longest wait 3 s (locker 3)"
	if got != want {
		t.Errorf("StatusLine = %q, want %q", got, want)
	}
}
