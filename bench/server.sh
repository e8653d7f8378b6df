#!/usr/bin/env bash
# bench/server.sh — the server under load (issue 5): builds bench/loadgen
# and runs its scenarios against a real server on 127.0.0.1, printing one
# markdown table per part.
#
#   bash bench/server.sh
#
# Part 1 (server in process, CPU profile in $OUT/throughput.prof): the
# cheapest authenticated call/s (the floor of gRPC, HTTP/2 and TLS here),
# unchanged check-ins/s, catalog fetches/s, reports/s (no change, and 100
# events; one a SendReport call, and BATCH a SendReports call as an agent
# sends its spool), store size per node after 30 days of 30-minute runs.
# Part 2 (server in a child process, so that its RSS is its own; profile
# of the server in $OUT/fleet.prof.server.1 and .2): WATCHERS agents holding Watch
# streams: server RSS, commit → fleet converged, reconnect storm after a
# restart.
#
# Every loop is bounded in count and time; the only address used is
# 127.0.0.1. Needs: go. Run as root or with a high enough `ulimit -Hn`
# (each agent holds a connection).
#
# Knobs: AGENTS=512 CONCURRENCY=128 DURATION=10s COUNT=3 WATCHERS=10000
#        STORAGE_NODES=50 STORAGE_RUNS=1440 BATCH=32 PARTS="1 2" OUT=bench/out
#        STORE=postgres://USER@HOST/DB (a scratch database: the servers keep
#        their stores there, a schema herd_bench_* each, left behind;
#        default sqlite in each server's directory)
set -euo pipefail
AGENTS=${AGENTS:-512}
CONCURRENCY=${CONCURRENCY:-128}
DURATION=${DURATION:-10s}
COUNT=${COUNT:-3}
WATCHERS=${WATCHERS:-10000}
STORAGE_NODES=${STORAGE_NODES:-50}
STORAGE_RUNS=${STORAGE_RUNS:-1440}
BATCH=${BATCH:-32}
PARTS=${PARTS:-1 2}
STORE=${STORE:-}

cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/herd-bench-server.XXXXXX)}
mkdir -p "$OUT"
go build -o "$OUT/loadgen" ./bench/loadgen

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(go version | cut -d' ' -f3)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for part in $PARTS; do
	case $part in
	1)
		echo
		echo "## part 1: throughput and storage (server in process)"
		"$OUT/loadgen" -store "$STORE" -server inproc -scenarios empty,checkin,fetch,report,report100,batch,batch100,storage \
			-batch "$BATCH" -agents "$AGENTS" -concurrency "$CONCURRENCY" -duration "$DURATION" -count "$COUNT" \
			-storage-nodes "$STORAGE_NODES" -storage-runs "$STORAGE_RUNS" \
			-cpuprofile "$OUT/throughput.prof"
		;;
	2)
		echo
		echo "## part 2: $WATCHERS agents holding Watch streams (server in a child process)"
		"$OUT/loadgen" -store "$STORE" -server child -scenarios rss,converge,storm -watchers "$WATCHERS" \
			-cpuprofile "$OUT/fleet.prof"
		;;
	esac
done
echo
echo "profiles: go tool pprof -top $OUT/loadgen $OUT/throughput.prof (or $OUT/fleet.prof.server.1, .2 after the restart)"
