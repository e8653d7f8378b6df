#!/usr/bin/env bash
# bench/daemon.sh — the agent daemon's memory as a whole process: the
# herd-agent binary as it ships, running `herd-agent agent --site` (the
# masterless daemon: it compiles its catalog itself each run, which costs
# more memory than taking it from a server) over 200 file resources in a
# sandbox, made to run RUNS times by SIGHUP (each one a full run). It
# prints the peak RSS (VmHWM), the RSS after the first 100 runs and after
# the last (flat means no leak), and the RSS once idle (IDLE seconds
# after the last run), with the anonymous part of each.
#
#   bash bench/daemon.sh
#
# Needs: go. Bounded: RUNS signals, each waiting for its run to be logged.
# Knobs: RUNS=1000 IDLE=30
set -euo pipefail
RUNS=${RUNS:-1000}
IDLE=${IDLE:-30}

cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/herd-bench-daemon.XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
go build -tags grpcnotrace -o "$work/herd-agent" ./cmd/herd-agent
. bench/lib.sh
as_installed "$work/herd-agent"

site="$work/site"; mkdir -p "$site/roles"
printf '[[node]]\nroles = ["bench"]\n' > "$site/nodes.toml"
for d in $(seq -w 0 19); do
	printf '[[file]]\npath = "/srv/bench/d%s"\nensure = "directory"\nmode = "0755"\n\n' "$d"
	for f in $(seq 0 8); do
		printf '[[file]]\npath = "/srv/bench/d%s/f%s"\ncontent = "file %s of directory %s\\n"\nmode = "0644"\n\n' "$d" "$f" "$f" "$d"
	done
done > "$site/roles/bench.toml"
root="$work/root"; mkdir -p "$root/srv/bench"

log="$work/agent.log"
"$work/herd-agent" agent --site "$site" --root "$root" --name bench --interval 24h >"$log" 2>&1 &
pid=$!
runs() { grep -c '"msg":"run done"' "$log" || true; }
wait_runs() { # n: wait until n runs are logged (at most 30 s)
	local i
	for i in $(seq 3000); do
		[ "$(runs)" -ge "$1" ] && return 0
		kill -0 "$pid" 2>/dev/null || { echo "the agent exited:"; tail -5 "$log"; exit 1; }
		sleep 0.01
	done
	echo "run $1 did not come within 30 s"; tail -5 "$log"; exit 1
}
mem() { awk '/^(VmRSS|RssAnon):/ {printf "%s %.1f MiB  ", $1, $2/1024}' "/proc/$pid/status"; }
at100="(fewer than 100 runs)"
wait_runs 1
for n in $(seq 2 "$RUNS"); do
	kill -HUP "$pid"
	wait_runs "$n"
	if [ "$n" = 100 ]; then at100=$(mem); fi
done
atEnd=$(mem)
sleep "$IDLE"
echo "runs: $(runs) (each a full masterless run of 200 resources)"
echo "after 100 runs:  $at100"
echo "after $RUNS runs: $atEnd"
echo "idle ${IDLE}s later: $(mem)"
echo "peak: $(awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
