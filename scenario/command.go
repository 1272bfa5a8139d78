package scenario

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// tmpl is a per-locker template word, resolved when queues are expanded.
type tmpl uint8

const (
	tmplNone tmpl = iota // a literal number
	tmplID               // {id}: the locker's own id
	tmplNext             // {next}: (id+1) % procs
	tmplLast             // {last}: procs-1
	tmplFile             // {file}: the locker's file (paths only)
)

var tmplWords = map[string]tmpl{"{id}": tmplID, "{next}": tmplNext, "{last}": tmplLast, "{file}": tmplFile}

// numTmpl is a number or a template word standing for one.
type numTmpl struct {
	n int64
	t tmpl
}

func (v numTmpl) resolve(id, procs int) int64 {
	switch v.t {
	case tmplID:
		return int64(id)
	case tmplNext:
		return int64((id + 1) % procs)
	case tmplLast:
		return int64(procs - 1)
	}
	return v.n
}

// targetItem is N, N-M or N-{last}; a single N has lo == hi. With node set it is node=N or
// node=N-M: the lockers on those nodes.
type targetItem struct {
	lo, hi numTmpl // t is tmplNone or tmplLast
	node   bool
	col    int
}

// Which options each command takes.
type optSet uint8

const (
	optKind optSet = 1 << iota
	optStyle
	optTries
	optInterval
	optRange
	optFD
	optMode
)

var optNames = map[string]optSet{
	"kind": optKind, "style": optStyle, "tries": optTries, "interval": optInterval,
	"range": optRange, "fd": optFD, "mode": optMode,
}

// ops maps each command word to its op and the options it takes. "@" after file and sleep is
// their argument; after the others it schedules the command.
var ops = map[string]struct {
	op   proto.Op
	opts optSet
}{
	"read":      {proto.OpLock, optKind | optStyle | optTries | optInterval | optRange | optFD},
	"write":     {proto.OpLock, optKind | optStyle | optTries | optInterval | optRange | optFD},
	"release":   {proto.OpRelease, optKind | optRange | optFD},
	"releaseif": {proto.OpReleaseIf, optKind | optRange | optFD},
	"getlk":     {proto.OpGetlk, optMode | optKind | optRange | optFD},
	"close":     {proto.OpClose, optFD},
	"stop":      {proto.OpStop, 0},
	"file":      {proto.OpFile, optFD},
	"sleep":     {proto.OpSleep, 0},
}

// command reads one command line: [TARGETS:] WORD[@ARG] [VALUE] [key=value ...].
func (p *parser) command(n int, text string, toks []token) (stmt, error) {
	st := stmt{line: n, col: toks[0].col, text: text}
	first := toks[0]
	targetText, cmdText, cut := "", "", false
	if strings.HasSuffix(first.s, ":") {
		targetText, cut = first.s[:len(first.s)-1], true
	} else if i := strings.IndexByte(first.s, ':'); i > 0 && isTargetText(first.s[:i]) {
		targetText, cmdText, cut = first.s[:i], first.s[i+1:], true
	}
	if cut {
		targets, err := p.targets(n, token{s: targetText, col: first.col})
		if err != nil {
			return st, err
		}
		st.targets = targets
		if cmdText != "" {
			toks[0] = token{s: cmdText, col: first.col + len(targetText) + 1}
		} else {
			toks = toks[1:]
		}
		if len(toks) == 0 {
			return st, p.errf(n, first.col+len(first.s), "%s is followed by no command", first.s)
		}
	}

	w := toks[0]
	word, arg, hasAt := strings.Cut(w.s, "@")
	spec, ok := ops[word]
	if !ok {
		return st, p.errf(n, w.col, "unknown command %q", word)
	}
	st.cmd.Op = spec.op
	argTok := token{s: arg, col: w.col + len(word) + 1}
	rest := toks[1:]
	// The seed harness's absolute instant has a space in it: write@2026-12-01 21:30:00.
	if hasAt && word != "file" && word != "sleep" && isSeedDate(arg) && len(rest) > 0 && isSeedClock(rest[0].s) {
		argTok.s += " " + rest[0].s
		rest = rest[1:]
	}
	switch word {
	case "read":
		st.cmd.Mode = semconv.ModeRead
	case "write":
		st.cmd.Mode = semconv.ModeWrite
	case "getlk":
		st.cmd.Mode = semconv.ModeWrite
	case "file":
		if !hasAt || arg == "" {
			return st, p.errf(n, w.col, "want file@PATH")
		}
		if err := p.pathTemplate(n, argTok); err != nil {
			return st, err
		}
		st.path = arg
		hasAt = false
	case "sleep":
		d, err := p.sleepArg(n, w, argTok, hasAt, rest)
		if err != nil {
			return st, err
		}
		if !hasAt {
			rest = rest[1:]
		}
		st.cmd.Duration = d
		hasAt = false
	}
	if hasAt {
		if err := p.when(n, argTok, &st.cmd); err != nil {
			return st, err
		}
	}
	return st, p.options(n, word, spec.opts, rest, &st)
}

// isTargetText says whether the text before a ':' in a first token can only be targets (so
// "0:read" splits, while "write@2024-01-02T03:04:05Z" does not).
func isTargetText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == ',' || c == '-' || c == '{' || c == '}' || c == '=') {
			return false
		}
	}
	return true
}

// targets reads all | ITEM[,ITEM...] with ITEM = N | N-M, where N or M may be {last}, or
// node=N | node=N-M.
func (p *parser) targets(n int, t token) ([]targetItem, error) {
	if t.s == "all" {
		return nil, nil
	}
	if t.s == "" {
		return nil, p.errf(n, t.col, "empty target list before ':'")
	}
	var items []targetItem
	col := t.col
	for part := range strings.SplitSeq(t.s, ",") {
		if part == "all" {
			return nil, p.errf(n, col, "all cannot be combined with other targets")
		}
		if nodes, ok := strings.CutPrefix(part, "node="); ok {
			it, err := p.nodeTarget(n, token{s: nodes, col: col + len("node=")})
			if err != nil {
				return nil, err
			}
			items = append(items, it)
			col += len(part) + 1
			continue
		}
		loS, hiS, isRange := strings.Cut(part, "-")
		lo, err := p.bound(n, token{s: loS, col: col})
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = p.bound(n, token{s: hiS, col: col + len(loS) + 1}); err != nil {
				return nil, err
			}
			if lo.t == tmplLast && hi.t == tmplNone {
				return nil, p.errf(n, col, "range %q starts at {last}: write {last} alone", part)
			}
			if lo.t == tmplNone && hi.t == tmplNone && lo.n > hi.n {
				return nil, p.errf(n, col, "target range %q runs backwards", part)
			}
		}
		items = append(items, targetItem{lo: lo, hi: hi, col: col})
		col += len(part) + 1
	}
	// Literal items must not overlap: naming a locker twice is a slip, not a wish.
	lits := make([]targetItem, 0, len(items))
	for _, it := range items {
		if !it.node && it.lo.t == tmplNone && it.hi.t == tmplNone {
			lits = append(lits, it)
		}
	}
	sort.Slice(lits, func(i, j int) bool { return lits[i].lo.n < lits[j].lo.n })
	for i := 1; i < len(lits); i++ {
		if lits[i].lo.n <= lits[i-1].hi.n {
			return nil, p.errf(n, lits[i].col, "locker %d is named twice in the targets", lits[i].lo.n)
		}
	}
	return items, nil
}

// nodeTarget reads the N or N-M of node=N / node=N-M.
func (p *parser) nodeTarget(n int, t token) (targetItem, error) {
	loS, hiS, isRange := strings.Cut(t.s, "-")
	num := func(s string, col int) (int64, error) {
		if !isDigits(s) {
			return 0, p.errf(n, col, "node=%s: want a node number or a range N-M", t.s)
		}
		k, err := strconv.ParseInt(s, 10, 64)
		if err != nil || k >= MaxProcs {
			return 0, p.errf(n, col, "node %s is beyond the largest possible (%d)", s, MaxProcs-1)
		}
		return k, nil
	}
	lo, err := num(loS, t.col)
	if err != nil {
		return targetItem{}, err
	}
	hi := lo
	if isRange {
		if hi, err = num(hiS, t.col+len(loS)+1); err != nil {
			return targetItem{}, err
		}
		if lo > hi {
			return targetItem{}, p.errf(n, t.col, "node range %q runs backwards", t.s)
		}
	}
	return targetItem{lo: numTmpl{n: lo}, hi: numTmpl{n: hi}, node: true, col: t.col - len("node=")}, nil
}

func (p *parser) bound(n int, t token) (numTmpl, error) {
	if t.s == "{last}" {
		return numTmpl{t: tmplLast}, nil
	}
	if t.s == "" {
		return numTmpl{}, p.errf(n, t.col, "missing locker number in targets")
	}
	if !isDigits(t.s) {
		return numTmpl{}, p.errf(n, t.col, "target %q is not all, a locker number or {last}", t.s)
	}
	k, err := strconv.ParseInt(t.s, 10, 64)
	if err != nil || k >= MaxProcs {
		return numTmpl{}, p.errf(n, t.col, "locker %s is beyond the largest possible (%d)", t.s, MaxProcs-1)
	}
	return numTmpl{n: k}, nil
}

// seedLayout is the seed harness's absolute instant, %Y-%m-%d %H:%M:%S in UTC (a fraction of a
// second may follow).
const seedLayout = "2006-01-02 15:04:05"

// isSeedDate and isSeedClock recognise the two halves of a seed instant: 2026-12-01 and
// 21:30:00 (or 21:30:00.25).
func isSeedDate(s string) bool {
	return len(s) == 10 && digitsAt(s, 0, 1, 2, 3, 5, 6, 8, 9) && s[4] == '-' && s[7] == '-'
}

func isSeedClock(s string) bool {
	if len(s) < 8 || !digitsAt(s, 0, 1, 3, 4, 6, 7) || s[2] != ':' || s[5] != ':' {
		return false
	}
	return len(s) == 8 || s[8] == '.' && len(s) > 9 && isDigits(s[9:])
}

func digitsAt(s string, at ...int) bool {
	for _, i := range at {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// when reads +DURATION (from the scenario start), an RFC 3339 instant, or the seed harness's
// YYYY-MM-DD HH:MM:SS (UTC).
func (p *parser) when(n int, t token, c *proto.Command) error {
	c.HasAt = true
	if d, ok := strings.CutPrefix(t.s, "+"); ok {
		dur, err := p.duration(n, token{s: d, col: t.col + 1}, "time", true)
		c.After = dur
		return err
	}
	abs, err := time.Parse(time.RFC3339Nano, t.s)
	if err != nil {
		abs, err = time.ParseInLocation(seedLayout, t.s, time.UTC)
	}
	if err != nil {
		return p.errf(n, t.col, "time %q is not +DURATION, an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)", t.s)
	}
	c.Abs = abs
	return nil
}

// sleepArg reads sleep DURATION or the seed's sleep@N (N bare microseconds, or a duration).
func (p *parser) sleepArg(n int, w, arg token, hasAt bool, rest []token) (time.Duration, error) {
	if hasAt {
		if isDigits(arg.s) {
			us, err := strconv.ParseInt(arg.s, 10, 64)
			if err != nil || us > int64(time.Duration(1<<63-1)/time.Microsecond) {
				return 0, p.errf(n, arg.col, "sleep %q microseconds is too long", arg.s)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
		return p.duration(n, arg, "sleep", true)
	}
	if len(rest) == 0 {
		return 0, p.errf(n, w.col, "want sleep DURATION or sleep@MICROSECONDS")
	}
	if isDigits(rest[0].s) {
		return 0, p.errf(n, rest[0].col, "sleep %q needs a unit; bare microseconds only in the seed's form sleep@%s", rest[0].s, rest[0].s)
	}
	return p.duration(n, rest[0], "sleep", true)
}

// pathTemplate checks that every '{' in a path starts a known template word.
func (p *parser) pathTemplate(n int, t token) error {
	s := t.s
	for i, r := range s {
		if r < ' ' || r == 0x7f {
			return p.errf(n, t.col+i, "path holds the control character %q: a file name lockers can share has none", r)
		}
	}
	for off := 0; ; {
		i := strings.IndexByte(s[off:], '{')
		if i < 0 {
			return nil
		}
		i += off
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return p.errf(n, t.col+i, "'{' in path without '}': only {file}, {id}, {next} and {last} may appear")
		}
		if _, ok := tmplWords[s[i:i+j+1]]; !ok {
			return p.errf(n, t.col+i, "unknown template %q in path: want {file}, {id}, {next} or {last}", s[i:i+j+1])
		}
		off = i + j + 1
	}
}
