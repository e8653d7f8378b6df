#!/usr/bin/env bash
# bench/cluster.sh — several servers on one PostgreSQL store (issue 15):
# builds bench/loadgen and runs its scenarios against SERVERS servers,
# each in a process of its own on 127.0.0.1, sharing one schema of STORE
# and one CA (the first server's, copied to the others before their first
# start), each with its own copy of the synthetic site. Simulated agent i
# talks to server i mod SERVERS only. Prints one markdown table:
# unchanged check-ins/s and reports/s (one a call, and BATCH a
# SendReports call), the sum across the servers and each one's; the store
# size per node after 30 days of 30-minute runs (one server: it measures
# the store); each server's RSS with WATCHERS agents holding Watch streams
# spread over them; commit → fleet converged (the commit written to every
# server's site copy, until every agent reported a run of its new
# catalog), with how many catalogs each node was handed for the commit
# and a sample of nodes checked in with another server than their own.
#
#   STORE=postgres://USER@HOST/DB bash bench/cluster.sh
#
# STORE is required: a scratch database; the servers' schema
# (herd_bench_*) is left behind. SERVERS=1 runs the same scenarios against
# one server on PostgreSQL, for comparison.
#
# Every loop is bounded in count and time; the only addresses used are
# 127.0.0.1 and STORE. Nothing is started but the servers, and nothing is
# written outside OUT but the schemas. Needs: go. Run as root or with a
# high enough `ulimit -Hn` (each agent holds a connection).
#
# Knobs: SERVERS=3 WATCHERS=10000 AGENTS=512 CONCURRENCY=128 DURATION=10s
#        COUNT=3 BATCH=32 STORAGE_NODES=50 STORAGE_RUNS=1440 TIMEOUT=3m
#        SCENARIOS=checkin,report,batch,storage,rss,converge OUT=bench/out
set -euo pipefail
STORE=${STORE:-}
if [ -z "$STORE" ]; then
	echo "bench/cluster.sh: set STORE=postgres://USER@HOST/DB (a scratch database): the servers share one schema of it" >&2
	exit 2
fi
SERVERS=${SERVERS:-3}
WATCHERS=${WATCHERS:-10000}
AGENTS=${AGENTS:-512}
CONCURRENCY=${CONCURRENCY:-128}
DURATION=${DURATION:-10s}
COUNT=${COUNT:-3}
BATCH=${BATCH:-32}
STORAGE_NODES=${STORAGE_NODES:-50}
STORAGE_RUNS=${STORAGE_RUNS:-1440}
TIMEOUT=${TIMEOUT:-3m}
SCENARIOS=${SCENARIOS:-checkin,report,batch,storage,rss,converge}

cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/herd-bench-cluster.XXXXXX)}
mkdir -p "$OUT"
go build -o "$OUT/loadgen" ./bench/loadgen

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(go version | cut -d' ' -f3)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## $SERVERS servers on one PostgreSQL store, $WATCHERS agents holding Watch streams"
# TMPDIR: loadgen's work directory (the site copies, the servers'
# directories) is made inside OUT.
TMPDIR="$OUT" "$OUT/loadgen" -store "$STORE" -servers "$SERVERS" -server child -scenarios "$SCENARIOS" \
	-batch "$BATCH" -agents "$AGENTS" -concurrency "$CONCURRENCY" -duration "$DURATION" -count "$COUNT" \
	-storage-nodes "$STORAGE_NODES" -storage-runs "$STORAGE_RUNS" -watchers "$WATCHERS" -timeout "$TIMEOUT" \
	-cpuprofile "$OUT/cluster.prof"
echo
echo "profiles: go tool pprof -top $OUT/loadgen $OUT/cluster.prof.fleet.server0.1 (server 0 under the Watch streams; .throughput.serverK.1 under the request rates)"
