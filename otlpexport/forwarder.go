// Package otlpexport forwards lockprobe's spans to an OpenTelemetry collector
// (Jaeger, or any OTLP receiver) with the stock otlptracehttp and
// otlptracegrpc clients.
//
// Export is a side channel: the trace file is the record of a run, so a
// collector that is slow, down or rejecting must never block or fail the run.
// A Forwarder therefore queues without blocking, drops what does not fit,
// bounds every upload by a timeout, logs one warning on the first failure and
// reports at Close how many spans did not make it. ExportFile sends a saved
// trace file afterwards.
package otlpexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/tracefile"
)

// Stats counts spans by what became of them.
type Stats struct {
	// Exported spans were accepted by the collector.
	Exported int
	// Failed spans were in an upload that failed: refused, rejected (an
	// OTLP partial success counts its whole upload here), or timed out.
	Failed int
	// Dropped spans did not fit in the queue.
	Dropped int
	// Unsent spans were still queued when Close ran out of time.
	Unsent int
	// Partial counts span records left out because they had not ended; the
	// final record of the same span is exported when it comes.
	Partial int
	// SkippedLines counts trace-file lines that could not be read (only an
	// unfinished last line is tolerated). ExportFile only.
	SkippedLines int
}

// NotExported is the number of complete spans that did not reach the
// collector, for whatever reason.
func (s Stats) NotExported() int { return s.Failed + s.Dropped + s.Unsent }

// Forwarder uploads span batches in the background. Its methods are safe for
// concurrent use, and on a nil *Forwarder they do nothing, so a caller can
// hold a nil one when Enabled is false.
type Forwarder struct {
	opts    Options
	service string
	up      *uploader

	openMu sync.Mutex
	open   *pending

	mu      sync.Mutex
	queue   []*tracepb.ResourceSpans
	queued  int // spans in queue
	closing bool
	stats   Stats // Dropped and Partial; the uploader keeps the rest

	wake chan struct{} // cap 1: something was queued
	stop chan struct{} // closed by Close: flush and exit
	// abort is cancelled when Close's deadline passes, cutting short the
	// upload in flight.
	abortCtx context.Context
	abort    context.CancelFunc
	done     chan struct{} // closed when the worker has exited
}

// New starts a Forwarder for opts (see Enabled for whether to call it at
// all). ctx bounds only the start of the client (the gRPC client does not
// connect before its first upload); the Forwarder lives until Close.
func New(ctx context.Context, opts Options) (*Forwarder, error) {
	opts = opts.withDefaults()
	client, t, err := startClient(ctx, opts)
	if err != nil {
		return nil, err
	}
	abortCtx, abort := context.WithCancel(context.Background())
	f := &Forwarder{
		opts:     opts,
		service:  opts.serviceName(),
		up:       newUploader(client, t, opts),
		open:     newPending(opts.Hold),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		abortCtx: abortCtx,
		abort:    abort,
		done:     make(chan struct{}),
	}
	go f.run()
	return f, nil
}

// Enqueue hands a batch to the Forwarder and returns at once. Records of
// spans that have not ended are held back and folded into the span's final
// record when it comes (a span that never ends is never sent: the controller
// closes open spans at the end of a run); the rest are copied, so rs stays
// the caller's. When the queue is full, or after Close, the batch is dropped
// and counted.
func (f *Forwarder) Enqueue(rs []*tracepb.ResourceSpans) {
	if f == nil {
		return
	}
	f.openMu.Lock()
	ready, partial := f.open.add(rs)
	f.openMu.Unlock()
	f.enqueue(ready, partial)
}

// enqueue queues merged spans that are ready.
func (f *Forwarder) enqueue(ready []*tracefile.Span, partial int) {
	n := len(ready)
	var batch []*tracepb.ResourceSpans
	if n > 0 {
		var err error
		if batch, err = tracefile.ResourceSpans(Complete(ready, f.service)); err != nil {
			f.opts.Logger.Warn("otlpexport: spans not encodable", "err", err)
			n = 0
		}
	}
	f.mu.Lock()
	f.stats.Partial += partial
	switch {
	case n == 0:
	case f.closing || f.queued+n > f.opts.QueueSpans:
		f.stats.Dropped += n
	default:
		f.queue = append(f.queue, batch...)
		f.queued += n
	}
	f.mu.Unlock()
	if n > 0 {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// Close uploads what is queued, waiting at most until ctx is done, then
// stops the client. What could not be sent by then is counted as Unsent.
// The error is non-nil when any complete span was not exported; it carries
// the first upload error. Only the first call does anything.
func (f *Forwarder) Close(ctx context.Context) (Stats, error) {
	if f == nil {
		return Stats{}, nil
	}
	// The held spans go out first, as final as they will get; a second
	// Close finds none left.
	f.openMu.Lock()
	held := f.open.takeHeld()
	f.openMu.Unlock()
	f.enqueue(held, 0)
	f.mu.Lock()
	again := f.closing
	f.closing = true
	f.mu.Unlock()
	if again {
		return Stats{}, errors.New("otlpexport: Forwarder closed twice")
	}
	close(f.stop)

	var ctxErr error
	select {
	case <-f.done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		f.abort()
		<-f.done // the upload in flight sees abortCtx and returns
	}
	f.abort()

	f.mu.Lock()
	st := f.stats
	st.Unsent += f.queued
	f.queue, f.queued = nil, 0
	f.mu.Unlock()
	up := f.up.stats()
	st.Exported, st.Failed = up.Exported, up.Failed

	stopCtx := ctx
	if ctxErr != nil {
		// The caller's time is up, but the client still gets a moment
		// to close its connections.
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
	}
	stopErr := f.up.client.Stop(stopCtx)
	return st, f.up.closeErr(st, ctxErr, stopErr)
}

// run is the upload loop: it waits for spans, lets a batch fill for
// BatchDelay, uploads it, and on stop flushes everything still queued.
func (f *Forwarder) run() {
	defer close(f.done)
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			f.flush()
			return
		}
		f.linger()
		for f.uploadOne() {
			if f.abortCtx.Err() != nil {
				return
			}
		}
	}
}

// linger waits up to BatchDelay for the queue to fill a batch.
func (f *Forwarder) linger() {
	timer := time.NewTimer(f.opts.BatchDelay)
	defer timer.Stop()
	for {
		f.mu.Lock()
		full := f.queued >= f.opts.BatchSpans
		f.mu.Unlock()
		if full {
			return
		}
		select {
		case <-timer.C:
			return
		case <-f.stop:
			return
		case <-f.wake:
		}
	}
}

// flush uploads until the queue is empty or Close gives up.
func (f *Forwarder) flush() {
	for f.abortCtx.Err() == nil && f.uploadOne() {
	}
}

// uploadOne takes one batch off the queue and uploads it; it reports whether
// there was anything to take.
func (f *Forwarder) uploadOne() bool {
	f.mu.Lock()
	batch, rest, n := takeBatch(f.queue, f.opts.BatchSpans)
	f.queue = rest
	f.queued -= n
	f.mu.Unlock()
	if n == 0 {
		return false
	}
	f.up.upload(f.abortCtx, batch, n)
	return true
}

// uploader wraps an OTLP client with the accounting and the warn-once
// logging shared by Forwarder and ExportFile.
type uploader struct {
	client  otlptrace.Client
	target  target
	timeout time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	exported int
	failed   int
	firstErr error
}

func newUploader(c otlptrace.Client, t target, o Options) *uploader {
	return &uploader{client: c, target: t, timeout: o.UploadTimeout, log: o.Logger}
}

// upload sends one batch of n spans within the upload timeout and counts
// the outcome.
func (u *uploader) upload(ctx context.Context, batch []*tracepb.ResourceSpans, n int) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	err := u.client.UploadTraces(ctx, batch)
	u.mu.Lock()
	defer u.mu.Unlock()
	if err == nil {
		u.exported += n
		return
	}
	u.failed += n
	if u.firstErr == nil {
		u.firstErr = err
		u.log.Warn("otlpexport: upload to collector failed; the trace file is unaffected, further failures are only counted",
			"endpoint", u.target.desc, "protocol", u.target.protocol, "spans", n, "err", err)
	}
}

// stats returns the uploader's counts (Exported and Failed only).
func (u *uploader) stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Stats{Exported: u.exported, Failed: u.failed}
}

// closeErr summarises a finished export as an error, or nil when every
// complete span was exported.
func (u *uploader) closeErr(st Stats, ctxErr, stopErr error) error {
	u.mu.Lock()
	first := u.firstErr
	u.mu.Unlock()
	if stopErr != nil && ctxErr == nil {
		stopErr = fmt.Errorf("otlpexport: stop client: %w", stopErr)
	} else {
		stopErr = nil // a Stop cut short by our own deadline says nothing new
	}
	n := st.NotExported()
	if n == 0 {
		return stopErr
	}
	summary := fmt.Errorf("otlpexport: %d of %d spans not exported to %s (failed %d, dropped %d, unsent %d)",
		n, n+st.Exported, u.target.desc, st.Failed, st.Dropped, st.Unsent)
	return errors.Join(summary, first, ctxErr, stopErr)
}
