#!/usr/bin/env bash
# jaeger.sh — a local Jaeger (v2 binary, all-in-one, in-memory storage) on loopback, for looking
# at lockprobe's traces and for tests.
#
#   scripts/jaeger.sh build    build the version pinned in tools/go.mod once, into .cache/bin/
#   scripts/jaeger.sh start    start it (building first if needed), wait until the query API answers
#   scripts/jaeger.sh stop     stop it
#   scripts/jaeger.sh status   say whether it runs
#
# Listens on 127.0.0.1 only: OTLP gRPC :4317, OTLP HTTP :4318, UI and query API :16686 (and the
# all-in-one's side ports 5778, 5779, 8888, 13133, 14250, 14268, 6831/6832 udp, 9411, 16685,
# 27777, 27778). Then: lockprobe run -otlp http://127.0.0.1:4318 ... and http://127.0.0.1:16686.
# Env: JAEGER_BIN (use this binary), JAEGER_START_TIMEOUT (seconds, default 120).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2 }' "$root/tools/go.mod")
bin=${JAEGER_BIN:-$root/.cache/bin/jaeger-$version}
pidfile=$root/.cache/jaeger.pid
logfile=$root/.cache/jaeger.log
query=http://127.0.0.1:16686

build() {
	if [[ -x $bin ]]; then
		echo "jaeger: $bin is there"
		return
	fi
	mkdir -p "$(dirname "$bin")"
	echo "jaeger: building $version into $bin (several minutes on 2 cores)"
	local start=$SECONDS tmp="$bin.tmp.$$"
	# Built from the tools module so that jaeger's dependencies never touch the main go.mod.
	(cd "$root/tools" && go build -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
	mv -f "$tmp" "$bin"
	echo "jaeger: built in $((SECONDS - start)) s"
}

# running: the pid file names a live jaeger (a stale file whose pid was reused does not count).
running() {
	[[ -f $pidfile ]] || return 1
	local pid
	pid=$(cat "$pidfile")
	kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q jaeger
}

start() {
	if running; then
		echo "jaeger: already running (pid $(cat "$pidfile")), $query"
		return
	fi
	build
	# The embedded all-in-one config binds its receivers and extensions to
	# ${JAEGER_LISTEN_HOST:-localhost}, but the query extension's defaults are ":16686" and
	# ":16685", i.e. every interface, hence the two endpoint overrides. The query extension
	# also traces itself by default, over OTLP to localhost:4317, i.e. into this very Jaeger
	# (a "jaeger" service shows up) and, at shutdown, into a closed receiver for 10 s.
	JAEGER_LISTEN_HOST=127.0.0.1 setsid "$bin" \
		--set=extensions.jaeger_query.http.endpoint=127.0.0.1:16686 \
		--set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:16685 \
		--set=extensions.jaeger_query.enable_tracing=false \
		>"$logfile" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$pidfile"
	local deadline=$((SECONDS + ${JAEGER_START_TIMEOUT:-120}))
	while ! curl -fsS -o /dev/null "$query/api/services" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			echo "jaeger: exited during start-up; last lines of $logfile:" >&2
			tail -n 20 "$logfile" >&2
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			echo "jaeger: query API not answering after ${JAEGER_START_TIMEOUT:-120} s; see $logfile" >&2
			stop
			exit 1
		fi
		sleep 0.2
	done
	echo "jaeger: running (pid $pid): OTLP grpc://127.0.0.1:4317 http://127.0.0.1:4318, UI $query, log $logfile"
}

stop() {
	if ! running; then
		rm -f "$pidfile"
		echo "jaeger: not running"
		return
	fi
	local pid
	pid=$(cat "$pidfile")
	kill -TERM "$pid"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "jaeger: pid $pid ignored SIGTERM for 10 s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	echo "jaeger: stopped"
}

case ${1:-} in
build) build ;;
start) start ;;
stop) stop ;;
status)
	if running; then echo "jaeger: running (pid $(cat "$pidfile")), $query"; else echo "jaeger: not running"; fi
	;;
*)
	echo "usage: $0 build|start|stop|status" >&2
	exit 2
	;;
esac
