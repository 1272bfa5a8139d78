# lockprobe — build, test, benchmark, package.
#   make test     everything CI runs: installs what the tests need, runs all tests (real lockers,
#                 GlusterFS mounts, Jaeger, headless Chromium), stops what it started
#   make short    the quick tests only (go test -short)
#   make bench    the benchmarks; writes BENCHMARKS.md
#   make package  a release tarball in dist/
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Debian packages the end-to-end tests use (their Go helpers also install them when missing).
DEB_PKGS := glusterfs-server chromium fuse3 slurmd slurmctld slurm-client munge openssh-server openssh-client python3-casacore
APT_STAMP := .cache/apt-$(shell echo $(DEB_PKGS) | tr ' ' '-').stamp

.PHONY: all build test short deps lint staticcheck fuzz fuzz-short bench package clean jaeger

all: build

# Both binaries are static (CGO_ENABLED=0: nothing here needs cgo, and the dynamic loader cost
# each of a run's lockers about a millisecond of CPU at start-up; a static binary also runs on
# a cluster node whatever its libc). lockprobe-locker is the locker build (-tags lockeronly):
# the same locker and version commands without the rest of lockprobe, which run starts this
# host's lockers from (cmd/lockprobe/lockerbin.go).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/lockprobe ./cmd/lockprobe
	CGO_ENABLED=0 $(GO) build -tags lockeronly -ldflags "$(LDFLAGS)" -o bin/lockprobe-locker ./cmd/lockprobe

# deps installs the Debian packages once (as root; skipped when they are all there).
deps: $(APT_STAMP)
$(APT_STAMP):
	@mkdir -p .cache
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "deps: need root to apt-get install$$missing; tests that need them will skip"; exit 0; fi; \
		echo "deps: apt-get install$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300$$missing >/dev/null; \
	fi
	@touch $@

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) build -tags lockeronly -o /dev/null ./cmd/lockprobe

# The whole suite. -p 1 keeps the packages' end-to-end tests (real lockers, GlusterFS, Jaeger,
# Chromium) from fighting over the two cores.
test: deps lint jaeger
	$(GO) test -p 1 -count=1 -timeout 25m ./...
	$(MAKE) fuzz-short

# jaeger builds the Jaeger pinned in tools/go.mod once, into .cache/bin (minutes on a cold cache).
jaeger:
	scripts/jaeger.sh build

# staticcheck 2026.2.2 (module version v0.8.2: the proxy serves only that name), pinned; not part of
# `make test` (it downloads and builds the checker).
staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

short:
	$(GO) test -short -count=1 ./...

# FUZZ lists every fuzz target as package:Target. Each runs for FUZZTIME in `make test` (a few
# seconds; `make fuzz` runs them longer), and keeps what it finds in the package's
# testdata/fuzz/Target, which plain `go test` then replays as seed corpus.
FUZZ := proto:FuzzDecode wire:FuzzStream scenario:FuzzParse tracefile:FuzzRead tracefile:FuzzDecodeMatchesPdata \
	host:FuzzParseLocks host:FuzzParseMountInfoLine host:FuzzParseStatedump lockcall:FuzzParseProcSyscall \
	otlpexport:FuzzExportSpans semconv:FuzzParseKind simfs:FuzzParseFault simfs/locktable:FuzzParse \
	analysis:FuzzFixture reports:FuzzHTMLEscaping
FUZZTIME ?= 3s

# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded" when
# -fuzztime ends while a worker is mid-call (golang/go#75804, fixed in Go 1.27; seen here on a
# loaded machine with nothing found). Such a run, with no failing input written, is run once
# more; a second one, or any other failure, fails.
fuzz-short:
	@set -e; for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t#*:}; \
		for try in 1 2; do \
			echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
			if out=$$($(GO) test ./$$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -test.fuzzcachedir=$(CURDIR)/$$pkg/testdata/fuzz 2>&1); then break; fi; \
			if [ $$try = 1 ] && echo "$$out" | grep -q '^    context deadline exceeded$$' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "$$out" | tail -3; echo "fuzz $$pkg $$fn: the coordinator's deadline race (golang/go#75804), once more"; continue; fi; \
			echo "$$out"; exit 1; \
		done; echo "$$out" | grep 'new interesting' | tail -1; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=30s

# bench runs ./bench (real lockers, the bare baseline beside them; see BENCHMARKS.md) and writes
# BENCHMARKS.md from its output. BENCH_SHORT=1: the quick variant.
bench:
	@mkdir -p .cache
	$(GO) test ./bench -run '^$$' -bench . -benchtime 1x -timeout 20m $(if $(BENCH_SHORT),-short) | tee .cache/bench.txt
	$(GO) run ./bench/report -in .cache/bench.txt -out BENCHMARKS.md -findings bench/FINDINGS.md $(if $(BENCH_SHORT),-short)

package: build
	@mkdir -p dist
	tar -czf dist/lockprobe-$(VERSION)-linux-$$($(GO) env GOARCH).tar.gz --transform 's,^,lockprobe-$(VERSION)/,' \
		-C . README.md ARCHITECTURE.md -C bin lockprobe lockprobe-locker
	@ls -l dist/

clean:
	rm -rf bin dist
