package scenario

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/lockprobe/lockprobe/semconv"
)

// Limits that keep a hostile or mistyped scenario from exhausting memory.
const (
	// MaxProcs is the largest locker count Queues expands for, and one more than the largest
	// locker number a target may name.
	MaxProcs = 1 << 16
	// MaxFD is the largest descriptor slot (the locker keeps 64).
	MaxFD = 63
	// DefaultMaxCommands bounds the statements of a scenario after repeat blocks are unrolled.
	DefaultMaxCommands = 100_000
	// maxSize bounds the scenario text.
	maxSize = 1 << 20
	// maxRepeat bounds one repeat count.
	maxRepeat = 1_000_000
)

// DefaultBuiltin is the built-in scenario a run uses when none is named.
const DefaultBuiltin = "contend"

// Setting is a header value together with whether the scenario set it, so that a command-line
// flag can override it and a built-in default can fill it when neither says anything.
type Setting[T any] struct {
	Value T
	Set   bool
}

// Or returns the value when the scenario set it, def otherwise.
func (s Setting[T]) Or(def T) T {
	if s.Set {
		return s.Value
	}
	return def
}

// Header holds the defaults a scenario declares before its commands. Flags override them.
type Header struct {
	Procs    Setting[int]
	Timeout  Setting[time.Duration]
	Kind     Setting[semconv.Kind]
	Style    Setting[semconv.Style]
	Tries    Setting[int]
	Interval Setting[time.Duration]
}

// String renders the settings that are set, in the scenario language's header words, one
// per line; the empty string when none is set.
func (h Header) String() string {
	var b strings.Builder
	if h.Procs.Set {
		fmt.Fprintf(&b, "procs %d\n", h.Procs.Value)
	}
	if h.Timeout.Set {
		fmt.Fprintf(&b, "timeout %s\n", h.Timeout.Value)
	}
	if h.Kind.Set {
		fmt.Fprintf(&b, "kind %s\n", h.Kind.Value)
	}
	if h.Style.Set {
		fmt.Fprintf(&b, "style %s\n", h.Style.Value)
	}
	if h.Tries.Set {
		fmt.Fprintf(&b, "tries %d\n", h.Tries.Value)
	}
	if h.Interval.Set {
		fmt.Fprintf(&b, "interval %s\n", h.Interval.Value)
	}
	return b.String()
}

// Scenario is a parsed scenario: its header defaults and its statements, ready to be expanded
// into per-locker queues for a given locker count and file list.
type Scenario struct {
	Name        string // the name errors and reports use: a built-in's name or a file name
	Description string // from the first "# description:" comment, if any
	Text        string // the source as read, for the report's "Reproduce" section
	Header      Header

	stmts []stmt // repeat blocks already unrolled
}

// ParseOptions tunes Parse. The zero value is ready to use.
type ParseOptions struct {
	// MaxCommands bounds the statements after repeat blocks are unrolled (each statement
	// becomes one command per targeted locker). Optional; 0 means DefaultMaxCommands.
	MaxCommands int
}

// Error is a problem at a place in a scenario. Its text is one line:
// "name:line:col: what is wrong"; Col counts bytes from 1 and points at the offending token.
type Error struct {
	Name string
	Line int
	Col  int
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", printable(e.Name), e.Line, e.Col, printable(e.Msg))
}

// cut shortens a piece of the input for an error message to semconv.MaxQuoted bytes, on a
// character boundary: a 900 KB word once made a 900 KB "one-line" error.
func cut(s string) string {
	if len(s) <= semconv.MaxQuoted {
		return s
	}
	i := semconv.MaxQuoted
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// printable escapes what a terminal would act on (a carriage return, an escape sequence): an
// error is one plain line whatever the input held.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == utf8.RuneError }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Info describes one built-in scenario.
type Info struct {
	Name        string
	Description string
}

//go:embed builtin/*.lps
var builtinFS embed.FS

// Builtins lists the built-in scenarios, sorted by name.
func Builtins() []Info {
	entries, err := fs.ReadDir(builtinFS, "builtin")
	if err != nil {
		return nil // cannot happen with an embedded directory
	}
	infos := make([]Info, 0, len(entries))
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".lps")
		data, err := builtinFS.ReadFile(path.Join("builtin", e.Name()))
		if err != nil {
			continue
		}
		infos = append(infos, Info{Name: name, Description: description(string(data))})
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos
}

// ErrUnknownBuiltin is returned (wrapped) by Builtin for a name that is no built-in.
var ErrUnknownBuiltin = errors.New("no such built-in scenario")

// Builtin parses the built-in scenario called name; its Text is the embedded source.
func Builtin(name string) (*Scenario, error) {
	if name == "" || strings.ContainsAny(name, "/.") {
		return nil, fmt.Errorf("scenario %q: %w", name, ErrUnknownBuiltin)
	}
	data, err := builtinFS.ReadFile("builtin/" + name + ".lps")
	if err != nil {
		return nil, fmt.Errorf("scenario %q: %w", name, ErrUnknownBuiltin)
	}
	return Parse(name, strings.NewReader(string(data)), ParseOptions{})
}

// Load returns the built-in scenario called arg, or else parses the file at arg. An empty arg
// means DefaultBuiltin.
func Load(arg string, opts ParseOptions) (*Scenario, error) {
	if arg == "" {
		arg = DefaultBuiltin
	}
	if s, err := Builtin(arg); err == nil || !errors.Is(err, ErrUnknownBuiltin) {
		return s, err
	}
	// O_NONBLOCK: a FIFO would otherwise block the open until someone writes to it.
	f, err := os.OpenFile(arg, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("scenario %q is neither a built-in nor a readable file: %w", arg, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("scenario %q is neither a built-in nor a regular file", arg)
	}
	return Parse(arg, f, opts)
}

// description finds the first "# description:" comment of a source text.
func description(text string) string {
	for len(text) > 0 {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		if d, ok := descriptionLine(line); ok {
			return d
		}
	}
	return ""
}

func descriptionLine(line string) (string, bool) {
	line = strings.TrimSpace(line)
	rest, ok := strings.CutPrefix(line, "#")
	if !ok {
		return "", false
	}
	d, ok := strings.CutPrefix(strings.TrimSpace(rest), "description:")
	if !ok {
		return "", false
	}
	return strings.TrimSpace(d), true
}
