package probe

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// The spans of a lock cycle (the attempt, the hold, the release) carry a dozen attributes each,
// and making them was most of the lock thread's work per cycle (about 3 KB allocated), inside
// the hold or the gap before the next lock call that waiters race against. So the lock thread
// leaves only what it knows (the prepared command, the hold, the slot) and the sender makes the
// attributes: those that every span of the same command line, range and file share are
// encoded once and kept as bytes (encoder.sharedBytes); the span's own (its command index, the
// acquire id) are encoded per record. The three kinds begin with the attributes they share, in
// the same places (locker, kind, descriptor, then the range and the file that attempt and hold
// share): the controller's decoder takes a KeyValue repeated at the same place of consecutive
// records by comparing bytes, and a cycle's records come attempt, hold, release.

// attrSource makes a span's start attributes on the sender. What it reads does not change once
// the span has begun. The start attributes are shared, then the span's own, then open: the ones
// a later setAttributes may replace (no later attribute sets a shared or own key).
type attrSource interface {
	key() sharedKey
	shared() []attribute.KeyValue
	appendOwn(kvs []attribute.KeyValue) []attribute.KeyValue
	open() []attribute.KeyValue
}

// sharedKey identifies the shared attributes of a span: equal keys, equal attributes.
type sharedKey struct {
	name     string // the span's kind of source
	lockerID int
	line, fd int
	text     string
	op       proto.Op
	kind     semconv.Kind
	mode     semconv.Mode
	style    semconv.Style
	start    int64
	end      int64 // a length for an attempt, a range end for a hold
	held     bool
	slot     *slot // an attempt's open file; slots do not change once open
	path     string
	logical  string
	file     host.FileID
}

// The open attributes: an attempt is waiting until its end says how it ended; a hold is open
// until its end says why it ended.
var (
	openAttempt = []attribute.KeyValue{attribute.String(semconv.LockOutcome, semconv.OutcomeWaiting.String())}
	openHold    = []attribute.KeyValue{attribute.String(semconv.LockHoldEnd, semconv.HoldOpen.String())}
)

// lockSource is an attempt's: the lock command as prepared.
type lockSource struct {
	lockerID  int
	index     int
	cmd       *proto.Command
	kind      semconv.Kind
	style     semconv.Style
	s         *slot // nil: no file open in the command's slot
	scheduled int64 // the command's instant (unix ns, controller clock); 0: none
}

func (l *lockSource) key() sharedKey {
	c := l.cmd
	return sharedKey{name: semconv.SpanAcquire, lockerID: l.lockerID, line: c.Line, fd: c.FD, text: c.Text, kind: l.kind, mode: c.Mode,
		style: l.style, start: c.Start, end: c.Len, slot: l.s}
}

func (l *lockSource) shared() []attribute.KeyValue {
	c := l.cmd
	attrs := []attribute.KeyValue{
		attribute.Int(semconv.LockerID, l.lockerID),
		attribute.String(semconv.LockKind, l.kind.String()),
		attribute.Int(semconv.LockFD, c.FD),
		attribute.String(semconv.LockMode, c.Mode.String()),
		attribute.Int64(semconv.LockStart, c.Start),
		attribute.Int64(semconv.LockLen, c.Len),
	}
	if s := l.s; s != nil {
		attrs = append(attrs, attribute.String(semconv.FilePath, s.path), attribute.String(semconv.FileLogical, s.logical),
			attribute.String(semconv.FileDev, devString(s.file)), attribute.Int64(semconv.FileInode, int64(s.file.Inode)))
	}
	return append(attrs,
		attribute.Int(semconv.LockCmdLine, c.Line),
		attribute.String(semconv.LockCmdText, c.Text),
		attribute.String(semconv.LockStyle, l.style.String()))
}

func (l *lockSource) appendOwn(kvs []attribute.KeyValue) []attribute.KeyValue {
	return appendCommand(kvs, l.index, l.scheduled)
}

// appendCommand appends a command's own attributes: its index in the queue and its instant
// (none: 0).
func appendCommand(kvs []attribute.KeyValue, index int, scheduled int64) []attribute.KeyValue {
	kvs = append(kvs, attribute.Int(semconv.LockCmdIndex, index))
	if scheduled != 0 {
		kvs = append(kvs, attribute.Int64(semconv.LockScheduled, scheduled))
	}
	return kvs
}

func (l *lockSource) open() []attribute.KeyValue { return openAttempt }

// cmdSource is a command span's made on the sender (a release: its attributes used to be made
// on the lock thread just before the unlock call).
type cmdSource struct {
	lockerID  int
	index     int
	cmd       *proto.Command
	scheduled int64
	held      bool
	kind      semconv.Kind
}

func (c *cmdSource) key() sharedKey {
	return sharedKey{name: semconv.SpanCommand, lockerID: c.lockerID, line: c.cmd.Line, fd: c.cmd.FD, text: c.cmd.Text, op: c.cmd.Op,
		kind: c.kind, held: c.held}
}

func (c *cmdSource) shared() []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Int(semconv.LockerID, c.lockerID),
		attribute.String(semconv.LockKind, c.kind.String()),
		attribute.Int(semconv.LockFD, c.cmd.FD),
		attribute.Int(semconv.LockCmdLine, c.cmd.Line),
		attribute.String(semconv.LockCmdText, c.cmd.Text),
		attribute.Bool("lock.held", c.held),
		attribute.String("lock.op", c.cmd.Op.String()),
	}
}

func (c *cmdSource) appendOwn(kvs []attribute.KeyValue) []attribute.KeyValue {
	return appendCommand(kvs, c.index, c.scheduled)
}

func (c *cmdSource) open() []attribute.KeyValue { return nil }

// holdSource is a hold span's: the hold, whose fields do not change once held (cut makes new
// holds of the pieces).
type holdSource struct {
	h        *hold
	lockerID int
}

func (s *holdSource) key() sharedKey {
	h := s.h
	return sharedKey{name: semconv.SpanHold, lockerID: s.lockerID, fd: h.slot, kind: h.kind, mode: h.mode, start: h.start, end: h.end,
		path: h.path, logical: h.logical, file: h.file}
}

func (s *holdSource) shared() []attribute.KeyValue {
	return append([]attribute.KeyValue{attribute.Int(semconv.LockerID, s.lockerID)}, s.h.attrs()...)
}

func (s *holdSource) appendOwn(kvs []attribute.KeyValue) []attribute.KeyValue {
	return append(kvs, attribute.String(semconv.LockAcquireID, spanIDHex(s.h.acquireID)))
}

func (s *holdSource) open() []attribute.KeyValue { return openHold }

// spanIDHex is a span id as OTLP JSON and the trace's attributes write it.
func spanIDHex(id [8]byte) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i, c := range id {
		b[2*i], b[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(b[:])
}
