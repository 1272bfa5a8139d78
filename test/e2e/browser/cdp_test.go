package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// A tiny Chrome DevTools protocol client: one websocket to the browser, flat sessions per page,
// commands matched to replies by id, every event kept for the test to read.

type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type cdpMsg struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *cdpError       `json:"error,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
}

type cdpCall struct {
	ID        int64  `json:"id"`
	Method    string `json:"method"`
	Params    any    `json:"params,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

type cdp struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	next    int64
	pending map[int64]chan cdpMsg
	events  []cdpMsg
	changed chan struct{} // closed and replaced whenever an event arrives
	done    chan struct{}
}

func dialCDP(url string) (*cdp, error) {
	ws, err := websocket.Dial(url, "", "http://127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("dial devtools %s: %w", url, err)
	}
	c := &cdp{ws: ws, pending: map[int64]chan cdpMsg{}, changed: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *cdp) read() {
	defer close(c.done)
	for {
		var m cdpMsg
		if err := websocket.JSON.Receive(c.ws, &m); err != nil {
			return
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.pending[m.ID]; ok {
				ch <- m
				delete(c.pending, m.ID)
			}
		} else {
			c.events = append(c.events, m)
			close(c.changed)
			c.changed = make(chan struct{})
		}
		c.mu.Unlock()
	}
}

// call sends a command and decodes its result into out (when not nil).
func (c *cdp) call(ctx context.Context, session, method string, params, out any) error {
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan cdpMsg, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	if err := websocket.JSON.Send(c.ws, cdpCall{ID: id, Method: method, Params: params, SessionID: session}); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if out != nil {
			if err := json.Unmarshal(m.Result, out); err != nil {
				return fmt.Errorf("%s: decode result: %w", method, err)
			}
		}
		return nil
	case <-c.done:
		return fmt.Errorf("%s: devtools connection closed", method)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// waitEvent waits for an event of the session with that method.
func (c *cdp) waitEvent(ctx context.Context, session, method string) (cdpMsg, error) {
	seen := 0
	for {
		c.mu.Lock()
		evs, changed := c.events, c.changed
		c.mu.Unlock()
		for _, e := range evs[seen:] {
			if e.Method == method && e.SessionID == session {
				return e, nil
			}
		}
		seen = len(evs)
		select {
		case <-changed:
		case <-c.done:
			return cdpMsg{}, fmt.Errorf("wait for %s: devtools connection closed", method)
		case <-ctx.Done():
			return cdpMsg{}, fmt.Errorf("wait for %s: %w", method, ctx.Err())
		}
	}
}

// eventsOf returns the session's events so far.
func (c *cdp) eventsOf(session string) []cdpMsg {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []cdpMsg
	for _, e := range c.events {
		if e.SessionID == session {
			out = append(out, e)
		}
	}
	return out
}

func (c *cdp) close() { c.ws.Close() }

// chromeFlags keep the browser from talking to anything but the test.
var chromeFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
	"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
	"--remote-allow-origins=http://127.0.0.1",
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// browser is a running headless chromium in its own process group.
type browser struct {
	cmd *exec.Cmd
	cdp *cdp
}

// startBrowser starts chromium with a fresh profile and connects to its DevTools endpoint.
func startBrowser(ctx context.Context, t *testing.T, bin string) *browser {
	t.Helper()
	args := append(append([]string{}, chromeFlags...), "--user-data-dir="+t.TempDir(), "about:blank")
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	b := &browser{cmd: cmd}
	t.Cleanup(b.stop)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsURL.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stderr) // keep the pipe drained
	}()
	select {
	case url := <-found:
		c, err := dialCDP(url)
		if err != nil {
			t.Fatal(err)
		}
		b.cdp = c
	case <-ctx.Done():
		t.Fatalf("chromium printed no DevTools address: %v", ctx.Err())
	}
	return b
}

// stop asks the browser to close, then ends its process group (ours: it was started by this test).
func (b *browser) stop() {
	if b.cdp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.cdp.call(ctx, "", "Browser.close", nil, nil)
		cancel()
		b.cdp.close()
	}
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	// Helpers chromium forked (zygote, crashpad) share the group this test made for it.
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
}

// isRoot reports whether the test may install packages.
func isRoot() bool { return os.Geteuid() == 0 }
