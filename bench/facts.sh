#!/usr/bin/env bash
# bench/facts.sh — `herd-agent facts --json` (and the full `herd`) against
# facter and ohai on this host:
# wall time (hyperfine, median) and peak RSS (GNU time -v, median of RSS_RUNS).
# Prints a markdown table; run from anywhere in the repo.
#
#   bash bench/facts.sh
#
# Needs: go, hyperfine, jq, GNU time (/usr/bin/time). facter and ohai are
# measured when installed and skipped with a message when not.
#
# Knobs (environment):
#   WARMUP=3 RUNS=30  hyperfine settings for herd and facter
#   OHAI_RUNS=10      ohai's runs (warmup 1): on a host without a cloud
#                     metadata service each run waits ~19 s on its timeouts
#   RSS_RUNS=5        runs of /usr/bin/time -v per tool
set -euo pipefail

WARMUP=${WARMUP:-3}
RUNS=${RUNS:-30}
OHAI_RUNS=${OHAI_RUNS:-10}
RSS_RUNS=${RSS_RUNS:-5}

cd "$(dirname "$0")/.."
for tool in go hyperfine jq /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "bench/facts.sh: $tool is required" >&2; exit 1; }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/herd" ./cmd/herd
# The node binary, as it ships (README: Two binaries).
go build -tags grpcnotrace -o "$out/herd-agent" ./cmd/herd-agent
. bench/lib.sh
as_installed "$out/herd" "$out/herd-agent"

echo "## machine"
echo
echo "- cpus: $(nproc), $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "- kernel: $(uname -sr)"
echo "- herd: $("$out/herd" version)"

# name|command|hyperfine extra args. -i: facter exits 1 when one of its facts
# fails (here: reading /proc/1/environ), which hyperfine would count a failure.
tools=("herd-agent|$out/herd-agent facts --json|--warmup $WARMUP --runs $RUNS"
	"herd|$out/herd facts --json|--warmup $WARMUP --runs $RUNS")
if command -v facter >/dev/null; then
	tools+=("facter|facter --json|--warmup $WARMUP --runs $RUNS -i")
	echo "- facter: $(facter --version)"
else
	echo "- facter: not installed, skipped"
fi
if command -v ohai >/dev/null; then
	tools+=("ohai|ohai|--warmup 1 --runs $OHAI_RUNS -i")
	echo "- ohai: $(ohai --version 2>/dev/null)"
else
	echo "- ohai: not installed, skipped"
fi
echo

# median of numbers on stdin
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

declare -A wall rss
for t in "${tools[@]}"; do
	IFS='|' read -r name cmd extra <<<"$t"
	echo "measuring $name: $cmd" >&2
	# shellcheck disable=SC2086 # $extra is a list of options
	hyperfine -N $extra --export-json "$out/$name.json" --style none "$cmd" >&2
	wall[$name]=$(jq '.results[0].median * 1000' "$out/$name.json")
	for _ in $(seq "$RSS_RUNS"); do
		# shellcheck disable=SC2086 # $cmd is a command line
		# facter's exit 1 must not stop the script (set -e, pipefail).
		{ /usr/bin/time -v $cmd 2>&1 >/dev/null || true; } | awk -F: '/Maximum resident set size/ {print $2+0}'
	done | median >"$out/$name.rss"
	rss[$name]=$(cat "$out/$name.rss")
done

ratio() { # ratio A B: A/B, or "–" without B
	if [[ -n ${2:-} ]]; then awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f×", a/b}'; else echo "–"; fi
}
echo "| command | median wall | vs facter | peak RSS (median of $RSS_RUNS) | vs facter |"
echo "|---|---:|---:|---:|---:|"
for t in "${tools[@]}"; do
	IFS='|' read -r name cmd _ <<<"$t"
	printf '| `%s` | %.1f ms | %s | %.1f MiB | %s |\n' \
		"${cmd/#$out\//}" "${wall[$name]}" "$(ratio "${wall[$name]}" "${wall[facter]:-}")" \
		"$(awk -v k="${rss[$name]}" 'BEGIN {print k/1024}')" "$(ratio "${rss[$name]}" "${rss[facter]:-}")"
done
