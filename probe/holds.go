package probe

import (
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
)

// slot is one open descriptor of the scenario (fd=K).
type slot struct {
	fd      int
	path    string
	logical string
	file    host.FileID
}

// hold is a lock this locker was granted and has not released: what the scenario believes.
type hold struct {
	kind       semconv.Kind
	mode       semconv.Mode
	start, end int64 // [start, end); end = math.MaxInt64 for "to EOF"
	slot       int
	file       host.FileID
	path       string
	logical    string
	acquireID  [8]byte // the span id of the attempt that was granted it
	begin      int64   // unix ns (controller clock)
	span       *span
	box        *holdSpan // the value this hold lies in, when made by recorder.newHold
}

func rangeEnd(start, length int64) int64 {
	if length == 0 {
		return math.MaxInt64
	}
	return start + length
}

func rangeLen(start, end int64) int64 {
	if end == math.MaxInt64 {
		return 0
	}
	return end - start
}

// sameOwner says whether a lock of kind taken through slot s on file f belongs to the same
// owner as h: the process for posix (any descriptor of the file), the open file description
// for ofd and flock.
func (h *hold) sameOwner(kind semconv.Kind, s int, f host.FileID) bool {
	if h.kind != kind {
		return false
	}
	if kind == semconv.KindPOSIX {
		return h.file == f
	}
	return h.slot == s
}

func (h *hold) overlaps(start, end int64) bool {
	if h.kind == semconv.KindFlock {
		return true
	}
	return h.start < end && start < h.end
}

func (h *hold) attrs() []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String(semconv.LockKind, h.kind.String()),
		attribute.Int(semconv.LockFD, h.slot),
		attribute.String(semconv.LockMode, h.mode.String()),
		attribute.Int64(semconv.LockStart, h.start),
		attribute.Int64(semconv.LockLen, rangeLen(h.start, h.end)),
		attribute.String(semconv.FilePath, h.path),
		attribute.String(semconv.FileLogical, h.logical),
		attribute.String(semconv.FileDev, devString(h.file)),
		attribute.Int64(semconv.FileInode, int64(h.file.Inode)),
	}
}

func devString(f host.FileID) string {
	return itoa(int64(f.Major)) + ":" + itoa(int64(f.Minor))
}

func itoa(i int64) string {
	return strconv.FormatInt(i, 10)
}

// startHold opens a hold span at t (controller clock). Its attributes are made from h by the
// sender: h does not change once held (cut makes new holds of the pieces).
func (e *executor) startHold(h *hold, t time.Time) {
	h.span = e.l.rec.startHold(h, e.l.opts.ID, t)
	e.holds = append(e.holds, h)
}

// endHold ends h's span at t for reason.
func (e *executor) endHold(h *hold, t time.Time, reason semconv.HoldEnd, extra ...attribute.KeyValue) {
	if len(extra) > 0 {
		h.span.setAttributes(extra...)
	}
	h.span.setAttributes(attribute.String(semconv.LockHoldEnd, reason.String()))
	h.span.endAt(e.l.rec, t)
}

// cut ends the parts of the holds selected by match that overlap [start, end) at instant now,
// and reopens the parts outside the range as new holds: an unlock or a conversion of part of a
// range leaves the rest held. It returns how many holds it touched. e.mu is held.
func (e *executor) cut(match func(*hold) bool, start, end int64, now int64, reason semconv.HoldEnd, extra ...attribute.KeyValue) int {
	var pieces []*hold
	kept := e.holds[:0] // filtered in place: a storm's cycle allocates no new list
	touched := 0
	for _, h := range e.holds {
		if !match(h) || !h.overlaps(start, end) {
			kept = append(kept, h)
			continue
		}
		touched++
		e.endHold(h, unixTime(now), reason, extra...)
		if h.kind == semconv.KindFlock {
			continue
		}
		if h.start < start {
			left := *h
			left.end, left.box = start, nil
			pieces = append(pieces, &left)
		}
		if end < h.end {
			right := *h
			right.start, right.box = end, nil
			pieces = append(pieces, &right)
		}
	}
	clear(e.holds[len(kept):]) // let the ended holds go
	e.holds = kept
	for _, p := range pieces {
		p.begin = now
		e.startHold(p, unixTime(now))
	}
	return touched
}
