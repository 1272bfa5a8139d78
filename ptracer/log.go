package ptracer

import "sync"

// Log gathers Events for whoever looks at them later (tests; watch, which reads the eBPF
// tracer's events at each look). It is safe for concurrent use; a nil Log holds nothing.
type Log struct {
	mu  sync.Mutex
	evs []Event
	off int // events before it were taken
}

// Add appends an event: a handler.
func (l *Log) Add(e Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

// Of returns the events of kind so far, taken or not, in order.
func (l *Log) Of(kind Kind) []Event {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// Take returns the events added since the last Take.
func (l *Log) Take() []Event {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]Event(nil), l.evs[l.off:]...)
	l.off = len(l.evs)
	return out
}
