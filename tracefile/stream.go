package tracefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Reading a whole trace into merged Spans before analysing it held every span at once: at 10^6
// events 1.2 GiB, most of it attempts and holds that the analysis turns into small values of
// its own anyway, and the collector's time went with it. Stream hands such spans over as soon as
// their final record is merged and forgets them, so that only the spans still open are held;
// the few others (the run, the processes, snapshots) are returned merged, as Read returns them.

// ErrLate says that a span Stream had handed over got a record after its final one: what it
// handed over was not the span the whole file merges to. lockprobe's writers never write such a
// record for an attempt or a hold (a span's records leave in order, its final one last; the
// controller ends only the spans nobody ended); the caller reads the file with Open instead.
var ErrLate = errors.New("a span's record came after its final one")

// StreamOptions say which spans Stream hands over as they complete.
type StreamOptions struct {
	// Release says whether a span of this name is handed over at its final record.
	Release func(name string) bool
	// Done gets each released span, merged and final. The span and everything in it are valid
	// only during the call (the records' room is reused); strings and attribute values may be
	// kept.
	Done func(*Span)
}

// Stream reads a trace like Read, but hands every span that opts.Release names to opts.Done at
// its final record instead of keeping it: the Trace it returns holds the other spans (and the
// released ones that never ended), and Streamed counts the released ones. ErrLate when a
// released span got a later record.
//
// It uses two goroutines: one decompresses and decodes the requests into batches of records
// (most of the time of reading), the caller's merges them in file order and calls Done, which
// builds the analysis's model. opts.Done runs on the caller's goroutine.
func Stream(r io.Reader, opts StreamOptions) (*Trace, error) {
	full := make(chan *batch, streamBatches)
	free := make(chan *batch, streamBatches)
	for range streamBatches {
		free <- &batch{}
	}
	stop := make(chan struct{})
	go decodeBatches(r, full, free, stop)
	m := &Merger{byID: map[key]*Span{}}
	var released keySet
	t := &Trace{}
	late := false
	// take merges one record in file order.
	take := func(k key, rec *Span) {
		s, ok := m.byID[k]
		switch {
		case ok:
			s.merge(rec.clone(), true)
		case rec.End != 0 && opts.Release(rec.Name):
			if released.has(k) {
				late = true
				return
			}
			// A first record that is final: handed over as decoded, never copied.
			rec.SpanID = spanIDHex(k.span)
			if !slices.IsSortedFunc(rec.Events, byTime) {
				slices.SortStableFunc(rec.Events, byTime)
			}
			opts.Done(rec)
			released.add(k)
			t.Streamed++
			return
		default:
			if released.has(k) {
				late = true
				return
			}
			s = m.add(k, rec.clone())
		}
		if s.End != 0 && opts.Release(s.Name) {
			opts.Done(s)
			delete(m.byID, k)
			released.add(k)
			t.Streamed++
		}
	}
	for b := range full {
		for i, k := range b.keys {
			if take(k, b.recs.recs[i]); late {
				break
			}
		}
		if late {
			close(stop)
			for range full { // the decoder's goroutine ends
			}
			return nil, ErrLate
		}
		if b.last {
			if b.err != nil {
				return nil, b.err
			}
			t.Requests, t.Truncated = b.requests, b.truncated
			break
		}
		b.recs.n, b.keys = 0, b.keys[:0]
		free <- b
	}
	t.Spans = m.Spans()
	return t, nil
}

// batch is records decoded from consecutive requests, in record order; the last batch of a
// file says how the file ended.
type batch struct {
	recs      recArena
	keys      []key // keys[i] is recs.recs[i]'s
	last      bool
	err       error
	requests  int
	truncated bool
}

const (
	streamBatches = 4   // batches in flight between the goroutines
	batchRecords  = 512 // records per batch: a channel hand-over per batch costs nothing next to them
)

var errStopped = errors.New("stopped")

// decodeBatches decodes the requests of r into batches taken from free and sends them on full,
// the last one with how the file ended, then closes full. It stops early when stop is closed.
func decodeBatches(r io.Reader, full chan<- *batch, free <-chan *batch, stop <-chan struct{}) {
	defer close(full)
	d := newDecoder()
	b := <-free
	requests := 0
	truncated, err := Requests(r, func(raw []byte) error {
		requests++
		d.recs = &b.recs
		if err := d.each(raw, func(k key, _ *Span) { b.keys = append(b.keys, k) }); err != nil {
			return fmt.Errorf("decode spans: %w", err)
		}
		if len(b.keys) < batchRecords {
			return nil
		}
		select {
		case full <- b:
		case <-stop:
			return errStopped
		}
		select {
		case b = <-free:
		case <-stop:
			return errStopped
		}
		return nil
	})
	b.last, b.err, b.requests, b.truncated = true, err, requests, truncated
	select {
	case full <- b:
	case <-stop:
	}
}

// StreamFile is Stream of the trace file at path (or of a run's output folder).
func StreamFile(path string, opts StreamOptions) (*Trace, error) {
	p, err := Find(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	t, err := Stream(f, opts)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return t, nil
}

// keySet remembers the released spans by a 64-bit hash of their key, in an open-addressing
// table: a Go map of the keys cost a quarter of a second at 10^6 events, this a tenth of that.
// Two keys of one hash only send the caller to the whole-file reading, never to a wrong result.
type keySet struct {
	slots []uint64 // 0: empty
	n     int
}

func keyHash(k key) uint64 {
	a := binary.LittleEndian.Uint64(k.trace[:8])
	b := binary.LittleEndian.Uint64(k.trace[8:])
	c := binary.LittleEndian.Uint64(k.span[:])
	// splitmix64's finalizer: every bit of the ids reaches the low bits that pick the slot
	// (span ids may count up in their high bytes).
	h := c ^ (a+b*0x9e3779b97f4a7c15)*0xc2b2ae3d27d4eb4f
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	h ^= h >> 31
	if h == 0 {
		h = 1
	}
	return h
}

func (s *keySet) has(k key) bool {
	if s.n == 0 {
		return false
	}
	h := keyHash(k)
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case h:
			return true
		case 0:
			return false
		}
	}
}

func (s *keySet) add(k key) {
	if 2*(s.n+1) > len(s.slots) { // at most half full: probes stay short
		old := s.slots
		s.slots = make([]uint64, max(1024, 2*len(old)))
		s.n = 0
		for _, h := range old {
			if h != 0 {
				s.insert(h)
			}
		}
	}
	s.insert(keyHash(k))
}

func (s *keySet) insert(h uint64) {
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case h:
			return
		case 0:
			s.slots[i] = h
			s.n++
			return
		}
	}
}

// clone copies a record out of the decoder's reused room.
func (s *Span) clone() *Span {
	c := *s
	c.Attrs = cloneAttrs(s.Attrs)
	c.Events = nil
	if len(s.Events) > 0 {
		c.Events = make([]Event, len(s.Events))
		for i, e := range s.Events {
			e.Attrs = cloneAttrs(e.Attrs)
			c.Events[i] = e
		}
	}
	if len(s.Links) == 0 {
		c.Links = nil
	}
	return &c
}

func cloneAttrs(a Attrs) Attrs {
	if len(a) == 0 {
		return nil
	}
	return append(Attrs(nil), a...)
}
