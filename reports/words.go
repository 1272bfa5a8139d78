package reports

import (
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/analysis"
)

// classTitles name each verdict class in a heading.
var classTitles = map[string]string{
	analysis.ClassHealthy:           "Healthy",
	analysis.ClassDeadlock:          "Deadlock",
	analysis.ClassFSDetected:        "Deadlock detected by the file system",
	analysis.ClassLostWakeup:        "Lost wake-up",
	analysis.ClassLostCallback:      "Lost lock callback",
	analysis.ClassStaleHolder:       "Stale holder",
	analysis.ClassForeignHolder:     "Foreign holder",
	analysis.ClassLongHold:          "Long hold",
	analysis.ClassExclusionViolated: "Mutual exclusion violated",
	analysis.ClassImplicitRelease:   "Implicit release",
	analysis.ClassIdleHolder:        "Stuck behind an idle holder",
	analysis.ClassNoVerdict:         "No verdict",
}

// classMeanings say in plain words what a class means for someone who never heard of lockprobe.
var classMeanings = map[string]string{
	analysis.ClassHealthy: "Every lock request ended (granted, refused or reported as a deadlock by the file system) " +
		"and no signature of a locking bug was found. The file system behaved as POSIX and Linux promise.",
	analysis.ClassDeadlock: "The lockers below wait for each other in a circle: each one holds a lock that the next one " +
		"needs, so none of them can go on. The file system did not break the circle (no EDEADLK), so they would wait forever. " +
		"On Linux the kernel detects POSIX cycles of up to 10 processes; OFD and flock cycles are never detected.",
	analysis.ClassFSDetected: "The lockers formed a circle of waits and the file system noticed it: it refused one request " +
		"with EDEADLK, which broke the circle. This is the correct behaviour, not a bug.",
	analysis.ClassLostWakeup: "A process is still waiting for a lock although, by the file system's own F_GETLK answer, " +
		"nothing conflicting is held any more. The lock became free but the waiter was never woken up to take it.",
	analysis.ClassLostCallback: "The file system granted the lock (F_GETLK names the waiting process itself as the holder) " +
		"but the waiting process was never told: it sleeps forever on a lock it already owns. In a distributed lock " +
		"manager this is the signature of a lost completion or blocking callback.",
	analysis.ClassStaleHolder: "A process waits behind a lock whose owner already released it, closed the file or exited. " +
		"The file system still reports a lock that no longer exists.",
	analysis.ClassForeignHolder: "A process that is not part of this run holds a conflicting lock, and the lockers wait for it. " +
		"Find that process (its pid and node are below) before blaming the file system.",
	analysis.ClassLongHold: "A waiter waited a long time, but the chain of waits ends at a live holder that is not waiting " +
		"itself. That is how the application uses its locks, not a hang of the file system.",
	analysis.ClassExclusionViolated: "Two processes held conflicting locks on the same bytes at the same time, longer than the " +
		"clocks could err. The file system broke mutual exclusion: data protected by this lock can be corrupted.",
	analysis.ClassImplicitRelease: "A POSIX lock was dropped because the process closed another descriptor of the same file. " +
		"POSIX requires this; it surprises applications that believe they still hold the lock.",
	analysis.ClassNoVerdict: "There is nothing to judge: the trace holds no run, or the run ended before its lockers ran " +
		"their scenario (it failed to start, or was interrupted while waiting for its lockers). Nothing was tested, " +
		"so nothing is declared healthy.",
	analysis.ClassIdleHolder: "A process of the program waits for a lock that another process of it holds, and that holder " +
		"waits for no lock: it sleeps, is stopped or is busy in another call (what it does is below). The file system is " +
		"not at fault; the program hangs until the holder lets go.",
}

func classTitle(class string) string {
	if t, ok := classTitles[class]; ok {
		return t
	}
	return class
}

func classMeaning(class string) string { return classMeanings[class] }

// severityClass gives the CSS class of a verdict by its exit status.
func severityClass(exit int) string {
	switch exit {
	case analysis.ExitHealthy:
		return "ok"
	case analysis.ExitStuck:
		return "warn"
	}
	return "bad"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// dur renders a duration in ns with three significant digits and a unit fit for it.
func dur(ns int64) string {
	neg := ""
	if ns < 0 {
		neg, ns = "-", -ns
	}
	f := float64(ns)
	switch {
	case ns == 0:
		return "0"
	case ns < 1e3:
		return neg + itoa(ns) + " ns"
	case ns < 1e6:
		return neg + sig(f/1e3) + " µs"
	case ns < 1e9:
		return neg + sig(f/1e6) + " ms"
	case ns < 600e9:
		return neg + sig(f/1e9) + " s"
	}
	return neg + sig(f/60e9) + " min"
}

// sig formats with three significant digits, no trailing zeros beyond one decimal.
func sig(f float64) string {
	prec := 0
	switch {
	case f < 10:
		prec = 2
	case f < 100:
		prec = 1
	}
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	return s
}

// rel renders an instant relative to the run's start, precise enough to order evidence:
// "+1.0001 s", "+12.345 ms".
func rel(t, start int64) string {
	if t == 0 || start == 0 {
		return "–"
	}
	sign, d := "+", t-start
	if d < 0 {
		sign, d = "−", -d
	}
	return sign + precise(d)
}

// precise renders a duration with up to four decimals of its unit, trailing zeros dropped.
func precise(ns int64) string {
	unit, div := "ns", 1.0
	switch {
	case ns >= 1e9:
		unit, div = "s", 1e9
	case ns >= 1e6:
		unit, div = "ms", 1e6
	case ns >= 1e3:
		unit, div = "µs", 1e3
	}
	s := strconv.FormatFloat(float64(ns)/div, 'f', 4, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + " " + unit
}
