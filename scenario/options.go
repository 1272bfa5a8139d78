package scenario

import (
	"math"
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// options reads the key=value options after a command word and checks how they combine.
func (p *parser) options(n int, word string, allowed optSet, toks []token, st *stmt) error {
	var seen optSet
	var triesCol, intervalCol, rangeCol, kindCol int
	for _, t := range toks {
		key, val, ok := strings.Cut(t.s, "=")
		if !ok {
			return p.errf(n, t.col, "unexpected %q: options are key=value", t.s)
		}
		opt, known := optNames[key]
		switch {
		case !known:
			return p.errf(n, t.col, "unknown option %q", key)
		case allowed&opt == 0:
			return p.errf(n, t.col, "%s takes no option %s", word, key)
		case seen&opt != 0:
			return p.errf(n, t.col, "option %s given twice", key)
		}
		seen |= opt
		v := token{s: val, col: t.col + len(key) + 1}
		if val == "" {
			return p.errf(n, v.col, "option %s has no value", key)
		}
		c := &st.cmd
		switch opt {
		case optKind:
			k, err := semconv.ParseKind(val)
			if err != nil {
				return p.errf(n, v.col, "%v", err)
			}
			c.Kind, kindCol = k, t.col
		case optStyle:
			st, err := semconv.ParseStyle(val)
			if err != nil {
				return p.errf(n, v.col, "%v", err)
			}
			c.Style = st
		case optMode:
			switch val {
			case "read":
				c.Mode = semconv.ModeRead
			case "write":
				c.Mode = semconv.ModeWrite
			default:
				return p.errf(n, v.col, "mode %q is not read or write", val)
			}
		case optTries:
			k, err := p.intIn(n, v, "tries", 1, math.MaxInt32)
			if err != nil {
				return err
			}
			c.Tries, triesCol = k, t.col
		case optInterval:
			d, err := p.duration(n, v, "interval", false)
			if err != nil {
				return err
			}
			c.Interval, intervalCol = d, t.col
		case optFD:
			k, err := p.intIn(n, v, "fd", 0, MaxFD)
			if err != nil {
				return err
			}
			c.FD = k
		case optRange:
			if err := p.rangeOpt(n, v, st); err != nil {
				return err
			}
			rangeCol = t.col
		}
	}
	c := &st.cmd
	poll := c.Style == semconv.StylePoll || c.Style == semconv.StyleUnset && p.sc.Header.Style.Value == semconv.StylePoll
	if triesCol != 0 && !poll {
		return p.errf(n, triesCol, "tries needs style=poll")
	}
	if intervalCol != 0 && !poll {
		return p.errf(n, intervalCol, "interval needs style=poll")
	}
	if c.Kind == semconv.KindFlock && rangeCol != 0 {
		return p.errf(n, rangeCol, "kind=flock locks the whole file: it takes no range")
	}
	if c.Kind == semconv.KindFlock && c.Op == proto.OpGetlk {
		return p.errf(n, kindCol, "getlk cannot ask about kind=flock: flock(2) has no query call")
	}
	return nil
}

// rangeOpt reads START:LEN, each a non-negative number or {id}, {next}, {last}; LEN 0 means to
// the end of the file.
func (p *parser) rangeOpt(n int, v token, st *stmt) error {
	startS, lenS, ok := strings.Cut(v.s, ":")
	if !ok {
		return p.errf(n, v.col, "range %q is not START:LEN", v.s)
	}
	start, err := p.rangeNum(n, token{s: startS, col: v.col}, "range start")
	if err != nil {
		return err
	}
	length, err := p.rangeNum(n, token{s: lenS, col: v.col + len(startS) + 1}, "range length")
	if err != nil {
		return err
	}
	if start.t == tmplNone && length.t == tmplNone && length.n > math.MaxInt64-start.n {
		return p.errf(n, v.col, "range %q runs past the largest file offset", v.s)
	}
	st.hasRange, st.start, st.length = true, start, length
	return nil
}

func (p *parser) rangeNum(n int, t token, what string) (numTmpl, error) {
	if tw, ok := tmplWords[t.s]; ok && tw != tmplFile {
		return numTmpl{t: tw}, nil
	}
	switch {
	case t.s == "":
		return numTmpl{}, p.errf(n, t.col, "%s is missing", what)
	case strings.HasPrefix(t.s, "-"):
		return numTmpl{}, p.errf(n, t.col, "%s %q is negative", what, t.s)
	case !isDigits(t.s):
		return numTmpl{}, p.errf(n, t.col, "%s %q is not a number, {id}, {next} or {last}", what, t.s)
	}
	k, err := strconv.ParseInt(t.s, 10, 64)
	if err != nil {
		return numTmpl{}, p.errf(n, t.col, "%s %q is too large", what, t.s)
	}
	return numTmpl{n: k}, nil
}
