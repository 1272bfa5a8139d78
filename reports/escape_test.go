package reports

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// hostile is a run whose names, stack lines, commands and scenario text try to break out of
// every context the report puts them in: element text, attributes, <title> in SVG, <pre>,
// <style> and <script>.
const hostile = `
run scenario="</title><script>alert('scenario')</script>" procs=2 timeout=30s poll=100ms kind=posix node=ctl
locker L0 node="<script>alert(4)</script>" pid=4711 unc=1ms fs="ext4</style>" mount="/mnt/'><svg onload=alert(5)>" lockopts="flock'><x>"
locker L1 node="c07' onmouseover='alert(6)" pid=5123 unc=1ms
@0s   L0 acquire a1 mode=write file="/tmp/</script><script>alert(7)</script>" cmd="wr 0 '><iframe src=//evil>"
@1ms  L0 grant a1 h1
@1s   L1 acquire a2 mode=write file="/tmp/</script><script>alert(7)</script>" cmd="</textarea><script>alert(8)</script>"
@1.1s L1 conflict a2 owner=self mode=write
@30s  C state L1 state=D wchan="<script>alert(9)</script>" stack="fcntl_setlk+0x1/0x2;</pre><script>alert(10)</script>;]]><!--" inflight="wr </style>"
@30s  C proclock id=1 blocker=0 class=POSIX mode=WRITE pid=4711 start=0 end=EOF
@30s  C end reason="</span><script>alert(11)</script>"
`

// The fixture language has no way to write a double quote; these go into the result directly.
const (
	hostileCommand  = "lockprobe run -file '\"><img src=x onerror=alert(1)>' </style><script>alert(2)</script>"
	hostileScenario = "@0 wr 0 </pre><script>alert(3)</script> \"quoted\" 'single' & <b>bold</b>"
	hostileStack    = "</details>\"><script>alert(13)</script>"
)

func TestHostileTextIsEscaped(t *testing.T) {
	res := resultOf(t, hostile)
	res.Run.Command, res.Run.ScenarioText = hostileCommand, hostileScenario
	for i := range res.Summaries {
		res.Summaries[i].Stack = append(res.Summaries[i].Stack, hostileStack)
	}
	var buf bytes.Buffer
	if err := HTML(&buf, res, Options{Version: "<script>alert(12)</script>", EndReason: "", Killed: []string{"<b>x</b>"}}); err != nil {
		t.Fatal(err)
	}
	writeOut(t, "hostile.html", buf.Bytes())
	p := checkHTML(t, buf.Bytes())
	if p.scripts != 1 {
		t.Errorf("%d <script> elements, want only the report's own", p.scripts)
	}
	doc, err := html.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "img", "iframe", "x", "textarea":
				t.Errorf("an element <%s> came out of the run's text", n.Data)
			case "svg":
				if n.Parent != nil && n.Parent.Type == html.ElementNode && n.Parent.Data != "div" {
					t.Errorf("an <svg> inside <%s> came out of the run's text", n.Parent.Data)
				}
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s %s=%q>: an event handler came out of the run's text", n.Data, a.Key, a.Val)
				}
			}
		}
		if n.Type == html.ElementNode && n.Data == "script" && n.FirstChild != nil && strings.Contains(n.FirstChild.Data, "alert(") {
			t.Errorf("the run's text reached a script: %.80q", n.FirstChild.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	// The text must still be there, shown as text.
	for _, want := range []string{
		"<script>alert(4)</script>",
		"</pre><script>alert(10)</script>",
		`"quoted" 'single' & <b>bold</b>`,
		"/tmp/</script><script>alert(7)</script>",
		`'"><img src=x onerror=alert(1)>'`,
		hostileStack,
		"</span><script>alert(11)</script>",
		"/mnt/'><svg onload=alert(5)>",
	} {
		if !strings.Contains(p.text, want) {
			t.Errorf("the page does not show %q as text", want)
		}
	}
	// The terminal gets no control characters from the run.
	res.Lockers[0].Node = "c12\x1b]0;pwned\x07"
	buf.Reset()
	if err := Terminal(&buf, res, Options{}); err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(buf.Bytes(), "\x1b\x07") {
		t.Errorf("control characters from the run reached the terminal:\n%q", buf.String())
	}
}
