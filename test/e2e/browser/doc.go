// Package browser holds the end-to-end test of the HTML report in a real browser: Debian's
// chromium, headless, driven over the Chrome DevTools protocol. It opens report.html from file://
// with JavaScript on and off, checks that the page loads nothing from the network, logs no error
// and shows the verdict, the timeline and the wait-for graph, and saves a screenshot.
//
//	LOCKPROBE_E2E_OUT=/tmp/e2e go test ./test/e2e/browser -v
package browser
