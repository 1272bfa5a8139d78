package probe

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/lockprobe/lockprobe/semconv"
)

// ownerAttrs are the attributes of a conflict owner, shared by conflict events, getlk spans and
// observer events.
func ownerAttrs(o owner) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Int(semconv.LockOwnerPID, o.pid),
		attribute.String(semconv.LockOwnerMode, o.mode.String()),
		attribute.Int64(semconv.LockOwnerStart, o.start),
		attribute.Int64(semconv.LockOwnerLen, o.len),
		attribute.Int(semconv.LockOwnerLockerID, o.lockerID),
		attribute.String(semconv.LockOwnerClass, o.class.String()),
		attribute.String(semconv.LockOwnerSource, o.source),
		attribute.String(semconv.Node, o.node),
	}
}
