#!/usr/bin/env bash
# bench/apply.sh — a no-change run of 200 resources (20 directories, 160
# files with content and mode, 20 symlinks) in a sandbox, as whole
# processes: `herd apply` beside `puppet apply` (Debian puppet-agent) and
# `cf-agent` (Debian cfengine3) doing the same work. Then, for herd only, the
# same plus 20 packages and 20 supervised services (WITH_SERVICES=1, the
# default), counting the child processes a no-change run spawns.
#
#   bash bench/apply.sh
#
# Needs: go, hyperfine, GNU time, dpkg-deb; puppet and cf-agent are measured
# when installed and skipped with a message when not. Runs as root (puppet
# and cf-agent manage real paths under a temp directory).
#
# Knobs: RUNS=20 WARMUP=3 PUPPET_RUNS=10 RSS_RUNS=5 WITH_SERVICES=1
set -euo pipefail
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
PUPPET_RUNS=${PUPPET_RUNS:-10}
RSS_RUNS=${RSS_RUNS:-5}
WITH_SERVICES=${WITH_SERVICES:-1}

cd "$(dirname "$0")/.."
for tool in go hyperfine /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "bench/apply.sh: $tool is required" >&2; exit 1; }
done
work=$(mktemp -d /tmp/herd-bench-apply.XXXXXX)
cleanup() {
	# Stop the services the services variant started, then remove the tree.
	if [ -x "$work/herd-agent" ] && [ -d "$work/svc-root" ]; then
		"$work/herd-agent" services stop --all --root "$work/svc-root" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/herd" ./cmd/herd
# Nodes run the lean binary, as it ships (README: Two binaries).
go build -tags grpcnotrace -o "$work/herd-agent" ./cmd/herd-agent
. bench/lib.sh
as_installed "$work/herd" "$work/herd-agent"

# --- the same 200 resources for each tool ------------------------------------
site="$work/site"
mkdir -p "$site/roles"
printf '[[node]]\nroles = ["bench"]\n' > "$site/nodes.toml"
pp="$work/bench.pp"
cf="$work/bench.cf"
: > "$site/roles/bench.toml"
: > "$pp"
cat > "$cf" <<'CF'
body common control { bundlesequence => { "bench" }; }
body perms m(mode) { mode => "$(mode)"; }
body link_from ln_s(x) { link_type => "symlink"; source => "$(x)"; when_no_source => "force"; }
bundle agent bench {
  vars:
    "base" string => "$(sys.workdir)";
  files:
CF
for d in $(seq -w 0 19); do
	printf '[[file]]\npath = "/srv/bench/d%s"\nensure = "directory"\nmode = "0755"\n\n' "$d" >> "$site/roles/bench.toml"
	printf 'file { "PUPPETROOT/srv/bench/d%s": ensure => directory, mode => "0755" }\n' "$d" >> "$pp"
	printf '    "CFROOT/srv/bench/d%s/." create => "true", perms => m("0755");\n' "$d" >> "$cf"
	for f in $(seq 0 7); do
		mode=0644; [ $((f % 2)) -eq 1 ] && mode=0640
		printf '[[file]]\npath = "/srv/bench/d%s/f%s"\ncontent = "file %s of directory %s\\n"\nmode = "%s"\n\n' "$d" "$f" "$f" "$d" "$mode" >> "$site/roles/bench.toml"
		printf 'file { "PUPPETROOT/srv/bench/d%s/f%s": ensure => file, content => "file %s of directory %s\\n", mode => "%s" }\n' "$d" "$f" "$f" "$d" "$mode" >> "$pp"
		printf '    "CFROOT/srv/bench/d%s/f%s" create => "true", content => "file %s of directory %s$(const.n)", perms => m("%s");\n' "$d" "$f" "$f" "$d" "$mode" >> "$cf"
	done
	printf '[[file]]\npath = "/srv/bench/d%s/link"\nensure = "link"\ntarget = "f0"\n\n' "$d" >> "$site/roles/bench.toml"
	printf 'file { "PUPPETROOT/srv/bench/d%s/link": ensure => link, target => "f0" }\n' "$d" >> "$pp"
	printf '    "CFROOT/srv/bench/d%s/link" link_from => ln_s("f0");\n' "$d" >> "$cf"
done
printf '}\n' >> "$cf"

herd_root="$work/herd-root"; mkdir -p "$herd_root/srv/bench"
puppet_root="$work/puppet-root"; mkdir -p "$puppet_root/srv/bench"
cf_root="$work/cf-root"; mkdir -p "$cf_root/srv/bench"
sed -i "s#PUPPETROOT#$puppet_root#g" "$pp"
sed -i "s#CFROOT#$cf_root#g" "$cf"
chmod 0600 "$cf"

herd_cmd="$work/herd-agent apply --site $site --root $herd_root --node bench"
puppet_cmd="puppet apply --confdir $work/puppet/conf --vardir $work/puppet/var --codedir $work/puppet/code --logdir $work/puppet/log --rundir $work/puppet/run $pp"
cf_cmd="cf-agent --no-lock --file $cf"

cmds=("herd::$herd_cmd")
command -v puppet >/dev/null && cmds+=("puppet::$puppet_cmd") || echo "puppet is not installed: skipped (apt-get install puppet-agent)" >&2
command -v cf-agent >/dev/null && cmds+=("cf-agent::$cf_cmd") || echo "cf-agent is not installed: skipped (apt-get install cfengine3)" >&2

# First runs converge; the measured runs must then change nothing.
for entry in "${cmds[@]}"; do
	name=${entry%%::*}; cmd=${entry#*::}
	$cmd >/dev/null 2>&1 || true
	$cmd > "$work/$name.second" 2>&1 || { [ "$name" = herd ] && { echo "herd's second run was not a no-change run:"; cat "$work/$name.second"; exit 1; }; }
done
count() { find "$1/srv/bench" -mindepth 1 | wc -l; }
echo "managed entries: herd $(count "$herd_root"), puppet $(count "$puppet_root"), cf-agent $(count "$cf_root")" >&2

echo
echo "| command | median wall | peak RSS |"
echo "|---|---:|---:|"
for entry in "${cmds[@]}"; do
	name=${entry%%::*}; cmd=${entry#*::}
	runs=$RUNS; [ "$name" = puppet ] && runs=$PUPPET_RUNS
	hyperfine -N -i --warmup "$WARMUP" --runs "$runs" --export-json "$work/$name.json" "$cmd" >/dev/null 2>&1
	med=$(python3 -c "import json,statistics;print('%.1f ms'%(statistics.median(json.load(open('$work/$name.json'))['results'][0]['times'])*1000))")
	rss=$(median_rss "$cmd")
	echo "| $name (no-change, 200 resources) | $med | $(awk "BEGIN {printf \"%.1f MiB\", $rss/1024}") |"
done

if [ "$WITH_SERVICES" = 1 ]; then
	# 200 resources plus 20 packages (test .debs installed with dpkg --root)
	# and 20 supervised services.
	svc_root="$work/svc-root"; mkdir -p "$svc_root/srv/bench" "$svc_root/var/lib/dpkg/info" "$svc_root/var/lib/dpkg/updates" "$svc_root/etc"
	: > "$svc_root/var/lib/dpkg/status"; : > "$svc_root/var/lib/dpkg/available"
	cp /etc/os-release "$svc_root/etc/os-release"
	svc_site="$work/svc-site"; cp -r "$site" "$svc_site"; mkdir -p "$svc_site/files"
	for p in $(seq -w 0 19); do
		stage="$work/deb-$p"; mkdir -p "$stage/DEBIAN" "$stage/usr/share/herd-bench-$p"
		printf 'Package: herd-bench-%s\nVersion: 1.0\nArchitecture: all\nMaintainer: bench <bench@herd.invalid>\nDescription: herd benchmark package %s\n' "$p" "$p" > "$stage/DEBIAN/control"
		echo "$p" > "$stage/usr/share/herd-bench-$p/marker"
		dpkg-deb --root-owner-group --build "$stage" "$svc_site/files/herd-bench-$p.deb" >/dev/null
		printf '[[package]]\nname = "herd-bench-%s"\nsource = "herd-bench-%s.deb"\n\n' "$p" "$p" >> "$svc_site/roles/bench.toml"
		printf '[[service]]\nname = "bench-%s"\nrun = ["/bin/sleep", "infinity"]\n\n' "$p" >> "$svc_site/roles/bench.toml"
	done
	svc_cmd="$work/herd-agent apply --site $svc_site --root $svc_root --node bench"
	$svc_cmd >/dev/null 2>&1 || true
	$svc_cmd > "$work/svc.second" 2>&1 || { echo "the services variant's second run was not a no-change run:"; cat "$work/svc.second"; exit 1; }
	hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/svc.json" "$svc_cmd" >/dev/null 2>&1
	med=$(python3 -c "import json,statistics;print('%.1f ms'%(statistics.median(json.load(open('$work/svc.json'))['results'][0]['times'])*1000))")
	rss=$(median_rss "$svc_cmd")
	echo "| herd (no-change, 200 + 20 packages + 20 services) | $med | $(awk "BEGIN {printf \"%.1f MiB\", $rss/1024}") |"
	if command -v strace >/dev/null; then
		forks=$(strace -f -qq -e trace=execve -o "$work/strace" $svc_cmd >/dev/null 2>&1; grep -c execve "$work/strace")
		echo
		echo "processes executed by one no-change run with packages and services (strace -f -e execve, the herd binary itself included): $forks"
	fi
fi
