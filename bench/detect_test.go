package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var detectedRE = regexp.MustCompile(`detected ([0-9.]+) ?([a-zµ]+) after it formed`)

// detectionLatency reads "deadlock detected D after it formed" from the summary, or
// detection_latency_ns from verdict.json when the summary does not say.
func detectionLatency(res result) (time.Duration, bool) {
	if m := detectedRE.FindStringSubmatch(res.stdout); m != nil {
		if d, err := time.ParseDuration(m[1] + m[2]); err == nil {
			return d, true
		}
	}
	raw, err := os.ReadFile(filepath.Join(res.out, "verdict.json"))
	if err != nil {
		return 0, false
	}
	var v struct {
		Verdict struct {
			DetectionLatencyNS int64 `json:"detection_latency_ns"`
		} `json:"verdict"`
		DetectionLatencyNS int64 `json:"detection_latency_ns"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	ns := max(v.Verdict.DetectionLatencyNS, v.DetectionLatencyNS)
	return time.Duration(ns), ns > 0
}

// BenchmarkDetection runs the ring built-in with OFD locks (the kernel detects no OFD cycles,
// so the ring hangs) with the default -poll and reports how long after the cycle formed the
// online detector ended the run.
func BenchmarkDetection(b *testing.B) {
	runs := short(5, 1)
	var lat []float64
	for i := 0; i < b.N*runs; i++ {
		res := runLockprobe(b, "ring", "-procs", "4", "-lock", "ofd", "-timeout", "30s")
		if res.code != 3 {
			b.Fatalf("ring with ofd: exit %d, want 3 (deadlock)\nstdout: %s", res.code, res.stdout)
		}
		d, ok := detectionLatency(res)
		if !ok {
			b.Fatalf("no detection latency in the summary or verdict.json\nstdout: %s", res.stdout)
		}
		lat = append(lat, float64(d))
	}
	b.ReportMetric(median(lat)/1e6, "detect-median-ms")
	b.ReportMetric(quantile(lat, 1)/1e6, "detect-max-ms")
}
