#!/usr/bin/env bash
# bench/growth.sh — how a no-change run grows with the catalog: 20,000 file
# resources (DIRS directories of FILES files, each with content and mode)
# in a sandbox, as whole processes, `herd-agent apply` beside `cf-agent`
# (Debian cfengine3) doing the same work: median wall time (hyperfine) and
# median peak RSS (GNU time -v). Puppet is left out: a run at this size
# takes it minutes.
#
#   bash bench/growth.sh
#
# Needs: go, hyperfine, GNU time; cf-agent is measured when installed and
# skipped with a message when not. Runs as root (cf-agent manages real
# paths under a temp directory).
#
# Knobs: DIRS=100 FILES=200 RUNS=10 WARMUP=2 RSS_RUNS=5
set -euo pipefail
DIRS=${DIRS:-100}
FILES=${FILES:-200}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-2}
RSS_RUNS=${RSS_RUNS:-5}

cd "$(dirname "$0")/.."
for tool in go hyperfine /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "bench/growth.sh: $tool is required" >&2; exit 1; }
done
work=$(mktemp -d /tmp/herd-bench-growth.XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -tags grpcnotrace -o "$work/herd-agent" ./cmd/herd-agent
. bench/lib.sh
as_installed "$work/herd-agent"

site="$work/site"; mkdir -p "$site/roles"
cf="$work/bench.cf"
herd_root="$work/herd-root"; mkdir -p "$herd_root/srv/bench"
cf_root="$work/cf-root"; mkdir -p "$cf_root/srv/bench"
# One awk pass writes both policies: a shell loop over 20,000 resources
# would take longer than the benchmark. Herd gets a role per directory (a
# site file may hold 1 MiB at most).
awk -v dirs="$DIRS" -v files="$FILES" -v site="$site" -v cf="$cf" -v cfroot="$cf_root" 'BEGIN {
	print "body common control { bundlesequence => { \"bench\" }; }" > cf
	print "body perms m(mode) { mode => \"$(mode)\"; }" > cf
	print "bundle agent bench {\n  files:" > cf
	printf "[[node]]\nroles = [" > (site "/nodes.toml")
	for (d = 0; d < dirs; d++) {
		dn = sprintf("d%03d", d)
		role = site "/roles/" dn ".toml"
		printf "%s\"%s\"", (d ? ", " : ""), dn > (site "/nodes.toml")
		printf "[[file]]\npath = \"/srv/bench/%s\"\nensure = \"directory\"\nmode = \"0755\"\n\n", dn > role
		printf "    \"%s/srv/bench/%s/.\" create => \"true\", perms => m(\"0755\");\n", cfroot, dn > cf
		for (f = 0; f < files; f++) {
			mode = (f % 2) ? "0640" : "0644"
			printf "[[file]]\npath = \"/srv/bench/%s/f%03d\"\ncontent = \"file %d of directory %s\\n\"\nmode = \"%s\"\n\n", dn, f, f, dn, mode > role
			printf "    \"%s/srv/bench/%s/f%03d\" create => \"true\", content => \"file %d of directory %s$(const.n)\", perms => m(\"%s\");\n", cfroot, dn, f, f, dn, mode > cf
		}
	}
	print "}" > cf
	print "]" > (site "/nodes.toml")
}'
chmod 0600 "$cf"

herd_cmd="$work/herd-agent apply --site $site --root $herd_root --node bench"
cf_cmd="cf-agent --no-lock --file $cf"
cmds=("herd-agent::$herd_cmd")
command -v cf-agent >/dev/null && cmds+=("cf-agent::$cf_cmd") || echo "cf-agent is not installed: skipped (apt-get install cfengine3)" >&2

# First runs converge; the measured runs must then change nothing.
for entry in "${cmds[@]}"; do
	name=${entry%%::*}; cmd=${entry#*::}
	$cmd >/dev/null 2>&1 || true
	if ! $cmd > "$work/$name.second" 2>&1 && [ "$name" = herd-agent ]; then
		echo "herd-agent's second run was not a no-change run:"; tail -5 "$work/$name.second"; exit 1
	fi
done
count() { find "$1/srv/bench" -mindepth 1 | wc -l; }
echo "managed entries: herd $(count "$herd_root"), cf-agent $(count "$cf_root")" >&2

echo
echo "| command | median wall | peak RSS |"
echo "|---|---:|---:|"
for entry in "${cmds[@]}"; do
	name=${entry%%::*}; cmd=${entry#*::}
	hyperfine -N -i --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/$name.json" "$cmd" >/dev/null 2>&1
	med=$(python3 -c "import json,statistics;print('%.1f ms'%(statistics.median(json.load(open('$work/$name.json'))['results'][0]['times'])*1000))")
	rss=$(median_rss "$cmd")
	echo "| $name (no-change, $((DIRS * FILES + DIRS)) resources) | $med | $(awk "BEGIN {printf \"%.1f MiB\", $rss/1024}") |"
done
