package control

import (
	"sync/atomic"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/tracefile"
	"github.com/lockprobe/lockprobe/wire"
)

// The loop took in a locker's span records by decoding, merging and observing them itself, and
// decoding was about half of that (BenchmarkSpanPipeline's live path, bench/FINDINGS.md): with
// a hundred lockers shipping faster than one core merges, the loop fell behind while the
// machine's other core had nothing to do once the lockers were done. The records are decoded
// on a goroutine of their own between the socket and the loop (ingest), in the order the
// messages came; the loop merges what it decoded. Nothing is written or merged out of the
// loop's order, so the trace file, the merger and the live analyzer still see the same records
// in the same order; a message decoded but never taken by the loop is lost to all three alike,
// as one left in the socket's queue was.

// incoming is a message of the socket and, for span records, the records decoded.
type incoming struct {
	wire.Incoming
	spans     *tracefile.Decoded // KindSpans: the message's records, nil when they did not decode
	decodeErr error
}

// ingest is the stage between the socket and the loop.
type ingest struct {
	out     chan incoming
	stop    chan struct{}
	pending atomic.Int64 // messages taken from the socket and not yet by the loop
}

// ingestDepth is how many decoded messages wait for the loop: enough for the decoder to stay
// ahead of it, few enough that a message is never long between the two.
const ingestDepth = 64

// startIngest decodes the span records of the socket's messages until in closes or stop is
// called; the loop reads them from out, which closes after in.
func startIngest(in <-chan wire.Incoming) *ingest {
	g := &ingest{out: make(chan incoming, ingestDepth), stop: make(chan struct{})}
	go func() {
		defer close(g.out)
		d := tracefile.NewDecoder()
		for m := range in {
			g.pending.Add(1)
			x := incoming{Incoming: m}
			if m.Err == nil && m.Msg != nil && m.Msg.Kind == proto.KindSpans {
				x.spans, x.decodeErr = d.Decode(m.Msg.SpansRaw)
			}
			select {
			case g.out <- x:
			case <-g.stop:
				return
			}
		}
	}()
	return g
}

// taken notes that the loop has taken a message.
func (g *ingest) taken() { g.pending.Add(-1) }

// backlog is how many messages are between the socket and the loop.
func (g *ingest) backlog() int { return int(g.pending.Load()) }

// close stops the stage; the loop reads no more.
func (g *ingest) close() { close(g.stop) }
