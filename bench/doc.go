// Package bench measures lockprobe as an instrument: how closely lockers fire at a shared
// instant, how much tracing and the F_GETLK watcher slow a lock hand-off and a lock/unlock cycle
// compared with a bare fcntl program (bench/baseline), how many spans the controller ingests,
// how long start-up takes and how much memory a locker needs, how soon an online deadlock is
// reported, and how fast `lockprobe analyze` reads a large trace.
//
// The benchmarks build the lockprobe binary and the baseline once, run them as real processes
// on a file in a temporary directory, and report their figures with b.ReportMetric, so that
// `go test ./bench -run '^$' -bench . -benchtime 1x` prints every figure of one run side by
// side; -short runs smaller variants. bench/report turns that output into BENCHMARKS.md
// (`make bench`). The package holds no timing thresholds: figures are measured, not asserted.
package bench
