package scenario

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// token is one whitespace-separated word of a line and where it starts.
type token struct {
	s   string
	col int // 1-based byte column
}

// stmt is one command line: what it does, with its per-locker templates left unresolved, and
// which lockers it is for.
type stmt struct {
	line, col int
	text      string
	targets   []targetItem // nil: all lockers
	cmd       proto.Command
	path      string // file: the path template
	hasRange  bool
	start     numTmpl
	length    numTmpl
}

// frame collects the statements of the top level or of one open repeat block.
type frame struct {
	stmts     []stmt
	times     int
	line, col int
}

type parser struct {
	name     string
	max      int
	sc       *Scenario
	frames   []frame
	commands bool // a command or repeat block was seen: no header lines any more
	toks     []token
}

// Parse reads a scenario in the language described in the package comment. name is used in
// error messages ("name:line:col: what is wrong") and as the Scenario's Name.
func Parse(name string, r io.Reader, opts ParseOptions) (*Scenario, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read scenario %s: %w", name, err)
	}
	if len(data) > maxSize {
		return nil, &Error{Name: name, Line: 1, Col: 1, Msg: fmt.Sprintf("scenario is larger than %d bytes", maxSize)}
	}
	p := &parser{name: name, max: opts.MaxCommands, sc: &Scenario{Name: name, Text: string(data)}}
	if p.max <= 0 {
		p.max = DefaultMaxCommands
	}
	p.frames = []frame{{}}
	lineNo := 0
	for rest := p.sc.Text; len(rest) > 0; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		lineNo++
		if err := p.line(lineNo, strings.TrimSuffix(line, "\r")); err != nil {
			return nil, err
		}
	}
	if len(p.frames) > 1 {
		f := p.frames[len(p.frames)-1]
		return nil, p.errf(f.line, f.col, "repeat block is not closed with }")
	}
	p.sc.stmts = p.frames[0].stmts
	if len(p.sc.stmts) == 0 {
		return nil, p.errf(lineNo+1, 1, "scenario has no commands")
	}
	return p.sc, nil
}

// errf makes an *Error; every string it quotes of the input is cut short first.
func (p *parser) errf(line, col int, format string, args ...any) error {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = cut(s)
		}
	}
	return &Error{Name: p.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// split cuts a line into tokens. A '#' starts a comment only at the start of a token, so a
// path such as a#b stays whole.
func (p *parser) split(line string) []token {
	toks := p.toks[:0]
	for i := 0; i < len(line); {
		if line[i] == ' ' || line[i] == '\t' {
			i++
			continue
		}
		if line[i] == '#' {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		toks = append(toks, token{s: line[i:j], col: i + 1})
		i = j
	}
	p.toks = toks
	return toks
}

func (p *parser) line(n int, line string) error {
	if p.sc.Description == "" {
		if d, ok := descriptionLine(line); ok {
			p.sc.Description = d
		}
	}
	toks := p.split(line)
	if len(toks) == 0 {
		return nil
	}
	switch w := toks[0].s; {
	case w == "}":
		return p.closeBlock(n, toks)
	case w == "repeat":
		return p.openBlock(n, toks)
	case isHeaderWord(w):
		if p.commands {
			return p.errf(n, toks[0].col, "header line %q after the first command; put header lines first", w)
		}
		return p.header(n, toks)
	}
	p.commands = true
	st, err := p.command(n, strings.TrimSpace(stripComment(line)), toks)
	if err != nil {
		return err
	}
	top := &p.frames[len(p.frames)-1]
	if len(top.stmts) >= p.max {
		return p.errf(n, toks[0].col, "more than %d commands", p.max)
	}
	top.stmts = append(top.stmts, st)
	return nil
}

// stripComment drops a comment the way split does.
func stripComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

func (p *parser) openBlock(n int, toks []token) error {
	p.commands = true
	if len(toks) != 3 || toks[2].s != "{" {
		return p.errf(n, toks[0].col, "want: repeat N {")
	}
	times, err := strconv.Atoi(toks[1].s)
	if err != nil || !isDigits(toks[1].s) || times < 1 || times > maxRepeat {
		return p.errf(n, toks[1].col, "repeat count %q is not a number from 1 to %d", toks[1].s, maxRepeat)
	}
	p.frames = append(p.frames, frame{times: times, line: n, col: toks[0].col})
	return nil
}

func (p *parser) closeBlock(n int, toks []token) error {
	if len(toks) > 1 {
		return p.errf(n, toks[1].col, "unexpected %q after }", toks[1].s)
	}
	if len(p.frames) == 1 {
		return p.errf(n, toks[0].col, "} without repeat")
	}
	f := p.frames[len(p.frames)-1]
	p.frames = p.frames[:len(p.frames)-1]
	parent := &p.frames[len(p.frames)-1]
	if int64(len(parent.stmts))+int64(len(f.stmts))*int64(f.times) > int64(p.max) {
		return p.errf(f.line, f.col, "repeat makes more than %d commands", p.max)
	}
	if len(f.stmts) == 0 {
		return nil // an empty block repeated is still empty; do not spin f.times
	}
	for range f.times {
		parent.stmts = append(parent.stmts, f.stmts...)
	}
	return nil
}

func isHeaderWord(w string) bool {
	switch w {
	case "procs", "timeout", "kind", "style", "tries", "interval":
		return true
	}
	return false
}

// header reads one header line: WORD VALUE.
func (p *parser) header(n int, toks []token) error {
	w := toks[0]
	if len(toks) < 2 {
		return p.errf(n, w.col, "%s needs a value", w.s)
	}
	if len(toks) > 2 {
		return p.errf(n, toks[2].col, "unexpected %q after %s %s", toks[2].s, w.s, toks[1].s)
	}
	v := toks[1]
	h := &p.sc.Header
	dup := func(set bool) error {
		if set {
			return p.errf(n, w.col, "%s set twice", w.s)
		}
		return nil
	}
	switch w.s {
	case "procs":
		if err := dup(h.Procs.Set); err != nil {
			return err
		}
		k, err := p.intIn(n, v, "procs", 1, MaxProcs)
		if err != nil {
			return err
		}
		h.Procs = Setting[int]{k, true}
	case "timeout":
		if err := dup(h.Timeout.Set); err != nil {
			return err
		}
		d, err := p.duration(n, v, "timeout", false)
		if err != nil {
			return err
		}
		h.Timeout = Setting[time.Duration]{d, true}
	case "kind":
		if err := dup(h.Kind.Set); err != nil {
			return err
		}
		k, err := semconv.ParseKind(v.s)
		if err != nil {
			return p.errf(n, v.col, "%v", err)
		}
		h.Kind = Setting[semconv.Kind]{k, true}
	case "style":
		if err := dup(h.Style.Set); err != nil {
			return err
		}
		st, err := semconv.ParseStyle(v.s)
		if err != nil {
			return p.errf(n, v.col, "%v", err)
		}
		h.Style = Setting[semconv.Style]{st, true}
	case "tries":
		if err := dup(h.Tries.Set); err != nil {
			return err
		}
		if h.Style.Value != semconv.StylePoll {
			return p.errf(n, w.col, "tries needs style poll in the header before it")
		}
		k, err := p.intIn(n, v, "tries", 1, 1<<31-1)
		if err != nil {
			return err
		}
		h.Tries = Setting[int]{k, true}
	case "interval":
		if err := dup(h.Interval.Set); err != nil {
			return err
		}
		if h.Style.Value != semconv.StylePoll {
			return p.errf(n, w.col, "interval needs style poll in the header before it")
		}
		d, err := p.duration(n, v, "interval", false)
		if err != nil {
			return err
		}
		h.Interval = Setting[time.Duration]{d, true}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// intIn reads a decimal integer in [lo, hi].
func (p *parser) intIn(n int, t token, what string, lo, hi int64) (int, error) {
	if !isDigits(t.s) {
		if strings.HasPrefix(t.s, "-") {
			return 0, p.errf(n, t.col, "%s %q is negative", what, t.s)
		}
		return 0, p.errf(n, t.col, "%s %q is not a number", what, t.s)
	}
	v, err := strconv.ParseInt(t.s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, p.errf(n, t.col, "%s %q is not from %d to %d", what, t.s, lo, hi)
	}
	return int(v), nil
}

// duration reads a Go duration; zero is allowed only when zeroOK.
func (p *parser) duration(n int, t token, what string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(t.s)
	switch {
	case err != nil && isDigits(t.s):
		return 0, p.errf(n, t.col, "%s %q needs a unit such as ms or s", what, t.s)
	case err != nil:
		return 0, p.errf(n, t.col, "%s %q is not a duration", what, t.s)
	case d < 0:
		return 0, p.errf(n, t.col, "%s %q is negative", what, t.s)
	case d == 0 && !zeroOK:
		return 0, p.errf(n, t.col, "%s must be more than zero", what)
	}
	return d, nil
}
