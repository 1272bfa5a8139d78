package tracefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Reading a whole trace into merged Spans before analysing it held every span at once: at 10^6
// events 1.2 GiB, most of it attempts and holds that the analysis turns into small values of
// its own anyway, and the garbage collector's time went with it. Stream hands such spans over as soon as
// their final record is merged and forgets them, so that only the spans still open are held;
// the few others (the run, the processes, snapshots) are returned merged, as Read returns them.

// ErrLate says that a span Stream had handed over got a record after its final one: what it
// handed over was not the span the whole file merges to. lockprobe's writers never write such a
// record for an attempt, a hold or a command (a span's records leave in order, its final one last; the
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
// Decoding is most of the time of reading, and is spread over the cores (pipeline): one
// goroutine decompresses and cuts the file into batches of requests, decoders turn the batches
// into records, and the caller's goroutine merges the records in file order and calls Done
// (which builds the analysis's model). opts.Done runs on the caller's goroutine.
func Stream(r io.Reader, opts StreamOptions) (*Trace, error) {
	p := startPipeline(r)
	defer p.close()
	m := &Merger{byID: map[key]*Span{}}
	// Every record that starts a span here (none merged before it) leaves the hash of its key:
	// a key that starts a span twice got a record after its span was handed over. Looking each
	// up in a set as it came cost a fifth of the merge (a cache miss each); looking for a
	// duplicate in the list once at the end (hasDuplicate) costs a tenth of that, and a late
	// record is rare enough to be found late.
	var firsts []uint64
	t := &Trace{}
	// take merges one record in file order.
	take := func(k key, rec *Span) {
		s, ok := m.byID[k]
		switch {
		case ok:
			s.merge(rec.clone(), true)
		case rec.End != 0 && opts.Release(rec.Name):
			firsts = append(firsts, keyHash(k))
			// A first record that is final: handed over as decoded, never copied.
			rec.SpanID = spanIDHex(k.span)
			if !slices.IsSortedFunc(rec.Events, byTime) {
				slices.SortStableFunc(rec.Events, byTime)
			}
			opts.Done(rec)
			t.Streamed++
			return
		default:
			firsts = append(firsts, keyHash(k))
			s = m.add(k, rec.clone())
		}
		if s.End != 0 && opts.Release(s.Name) {
			opts.Done(s)
			delete(m.byID, k)
			t.Streamed++
		}
	}
	for {
		b := p.next()
		if b.err != nil {
			return nil, b.err
		}
		for i, k := range b.keys {
			take(k, b.recs.recs[i])
		}
		if b.last {
			t.Requests, t.Truncated = b.requests, b.truncated
			break
		}
		p.recycle(b)
	}
	if hasDuplicate(firsts) {
		return nil, ErrLate
	}
	t.Spans = m.Spans()
	return t, nil
}

// batch is consecutive requests of a file (raw, each ends[i] bytes in) and, once decoded, their
// records in record order; the last batch of a file says how the file ended.
type batch struct {
	first     int    // the number of its first request in the file (from 1)
	raw       []byte // the requests, one after the other
	ends      []int
	recs      recArena
	keys      []key // keys[i] is recs.recs[i]'s
	last      bool
	err       error
	requests  int
	truncated bool
}

const (
	streamDecoders = 2         // decoding goroutines: this machine's cores, the framer and the merge share them
	streamBatches  = 8         // batches in flight
	batchBytes     = 256 << 10 // raw bytes per batch: a hand-over per batch costs nothing next to decoding it
)

// pipeline runs the goroutines of one Stream: the framer, which cuts the file into batches
// and hands batch i to decoder i mod streamDecoders, and the decoders, each passing its batches
// on in the order it got them; next takes them back in file order.
type pipeline struct {
	free  chan *batch
	toDec [streamDecoders]chan *batch
	out   [streamDecoders]chan *batch
	stop  chan struct{}
	done  sync.WaitGroup
	seq   int // the place in the file of the batch next returns
}

func startPipeline(r io.Reader) *pipeline {
	p := &pipeline{free: make(chan *batch, streamBatches), stop: make(chan struct{})}
	for range streamBatches {
		p.free <- &batch{}
	}
	for i := range p.toDec {
		p.toDec[i] = make(chan *batch, streamBatches)
		p.out[i] = make(chan *batch, streamBatches)
	}
	p.done.Add(1 + streamDecoders)
	go p.frame(r)
	for i := range streamDecoders {
		go p.decode(p.toDec[i], p.out[i])
	}
	return p
}

// next returns the next batch in file order, decoded; the last one has last or err set.
func (p *pipeline) next() *batch {
	b := <-p.out[p.seq%streamDecoders]
	p.seq++
	return b
}

// recycle gives a batch back for the framer to fill again.
func (p *pipeline) recycle(b *batch) {
	b.raw, b.ends, b.keys, b.recs.n = b.raw[:0], b.ends[:0], b.keys[:0], 0
	p.free <- b
}

// close stops the goroutines (when the caller stopped early) and waits for them.
func (p *pipeline) close() {
	close(p.stop)
	p.done.Wait()
}

// frame reads the requests of r into batches.
func (p *pipeline) frame(r io.Reader) {
	defer p.done.Done()
	var b *batch
	seq, requests := 0, 0
	send := func() bool {
		select {
		case p.toDec[seq%streamDecoders] <- b:
			seq++
			return true
		case <-p.stop:
			return false
		}
	}
	take := func() bool {
		select {
		case b = <-p.free:
			b.first = requests + 1
			return true
		case <-p.stop:
			return false
		}
	}
	if !take() {
		return
	}
	truncated, err := Requests(r, func(raw []byte) error {
		requests++
		b.raw = append(b.raw, raw...)
		b.ends = append(b.ends, len(b.raw))
		if len(b.raw) < batchBytes {
			return nil
		}
		if !send() || !take() {
			return errStopped
		}
		return nil
	})
	if errors.Is(err, errStopped) {
		return
	}
	b.last, b.err, b.requests, b.truncated = true, err, requests, truncated
	send()
}

// decode decodes the batches it gets and passes them on, in order.
func (p *pipeline) decode(in <-chan *batch, out chan<- *batch) {
	defer p.done.Done()
	d := newDecoder()
	for {
		var b *batch
		select {
		case b = <-in:
		case <-p.stop:
			return
		}
		d.recs = &b.recs
		start := 0
		for i, end := range b.ends {
			if err := d.each(b.raw[start:end], func(k key, _ *Span) { b.keys = append(b.keys, k) }); err != nil {
				b.err = fmt.Errorf("request %d: decode spans: %w", b.first+i, err)
				break
			}
			start = end
		}
		select {
		case out <- b:
		case <-p.stop:
			return
		}
		if b.last || b.err != nil {
			return
		}
	}
}

var errStopped = errors.New("stopped")

// StreamFile is Stream of the trace file at path (or of a run's output folder).
func StreamFile(path string, opts StreamOptions) (*Trace, error) {
	return readFile(path, func(r io.Reader) (*Trace, error) { return Stream(r, opts) })
}

// keyHash is a 64-bit hash of a span's key. Two keys of one hash only send Stream's caller to
// the whole-file reading, never to a wrong result.
// hasDuplicate reports whether hs holds a value twice; it reorders hs. A radix sort (eight
// passes of a byte each, their counts taken in one pass before) and a walk: slices.Sort of the
// 10^6 values of 10^6 events was a tenth of a second at the end of reading, when nothing else
// is left to run beside it; the radix sort is a fifth of that.
func hasDuplicate(hs []uint64) bool {
	if len(hs) < 1<<12 {
		slices.Sort(hs)
		return sortedDuplicate(hs)
	}
	var counts [8][256]int
	for _, h := range hs {
		for d := range 8 {
			counts[d][byte(h>>(8*d))]++
		}
	}
	from, to := hs, make([]uint64, len(hs))
	for d := range 8 {
		c := &counts[d]
		if c[byte(from[0]>>(8*d))] == len(from) {
			continue // every value has this byte: the pass would change nothing
		}
		at := 0
		for i, n := range c {
			c[i] = at
			at += n
		}
		for _, h := range from {
			b := byte(h >> (8 * d))
			to[c[b]] = h
			c[b]++
		}
		from, to = to, from
	}
	return sortedDuplicate(from)
}

func sortedDuplicate(hs []uint64) bool {
	for i := 1; i < len(hs); i++ {
		if hs[i] == hs[i-1] {
			return true
		}
	}
	return false
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
