// Package reports renders an analysis.Result for people and scripts: one self-contained HTML file
// for a bug ticket (report.html), a stable machine-readable verdict (verdict.json) and a short
// terminal summary, and the wait-for graph for Graphviz (waitfor.dot). All are built from one view
// model (View), so they never disagree. The analysis says what it found as data; every sentence
// about a run — summaries, evidence, labels — is written here (sentences.go), and verdict.json's
// names are this package's (VERDICT_JSON.md).
//
// The HTML carries no external script, style sheet, font or image and reads with JavaScript off;
// everything that came from the run (file names, scenario text, stack lines, command lines) is
// untrusted and goes through html/template's contextual escaping. Templates are real files under
// templates/, embedded and parsed once.
//
//	res := analysis.Analyze(trace, analysis.Options{})
//	err := reports.WriteAll(res, reports.Options{OutDir: dir, Version: version})
//	err = reports.Terminal(os.Stdout, res, reports.Options{OutDir: dir})
package reports
