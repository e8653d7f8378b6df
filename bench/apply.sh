#!/usr/bin/env bash
# bench/apply.sh — a no-change run of 200 resources (20 directories, 160
# files with content and mode, 20 symlinks) in a sandbox, as whole
# processes: `herd apply` beside `puppet apply` (Debian puppet-agent) and
# `cf-agent` (Debian cfengine3) doing the same work. Then, for herd only, the
# same plus 20 packages and 20 supervised services (WITH_SERVICES=1, the
# default), counting the child processes a no-change run spawns; and the
# 200 plus 20 of each of issue 13's types (WITH_NEW_TYPES=1, the default:
# line, ini, cron, sysctl, mount under the sandbox, authorized_key,
# apt_repository, and a file tree of 20 files), its no-change time beside
# the plain 200's (target: at most 1.5 times) and the processes it runs
# (target: none besides herd itself).
#
#   bash bench/apply.sh
#
# Needs: go, hyperfine, GNU time, dpkg-deb; puppet and cf-agent are measured
# when installed and skipped with a message when not. Runs as root (puppet
# and cf-agent manage real paths under a temp directory).
#
# Knobs: RUNS=20 WARMUP=3 PUPPET_RUNS=10 RSS_RUNS=5 WITH_SERVICES=1 WITH_NEW_TYPES=1
set -euo pipefail
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
PUPPET_RUNS=${PUPPET_RUNS:-10}
RSS_RUNS=${RSS_RUNS:-5}
WITH_SERVICES=${WITH_SERVICES:-1}
WITH_NEW_TYPES=${WITH_NEW_TYPES:-1}

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
if [ "$WITH_NEW_TYPES" = 1 ]; then
	# The same 200 resources plus 20 of each of issue 13's types, all on
	# the no-change path: 20 lines of one file, 20 settings of one ini
	# file, 20 cron jobs, 20 sysctls (plain files standing in for
	# /proc/sys in the sandbox), 20 fstab entries (nothing is mounted under
	# --root), 20 authorized keys of one user, 20 apt sources with a key,
	# and a file tree of 20 files; plus the directories they need and
	# the user.
	command -v ssh-keygen >/dev/null || { echo "bench/apply.sh: ssh-keygen is required for WITH_NEW_TYPES=1" >&2; exit 1; }
	nt_root="$work/nt-root"; mkdir -p "$nt_root/srv/bench"
	nt_site="$work/nt-site"; cp -r "$site" "$nt_site"; mkdir -p "$nt_site/files/tree"
	cp examples/site/files/herd-demo-repo.asc "$nt_site/files/bench.asc"
	keys="$work/keys"; mkdir -p "$keys"
	role="$nt_site/roles/bench.toml"
	cat >> "$role" <<'TOML'
[[file]]
path = "/srv/bench/new"
ensure = "directory"
mode = "0755"

[[file]]
path = "/etc/cron.d"
ensure = "directory"
mode = "0755"

[[file]]
path = "/etc/sysctl.d"
ensure = "directory"
mode = "0755"

[[user]]
name = "bench"
uid = 3000
home = "/home/bench"
shell = "/bin/sh"
managehome = true

[[file]]
path = "/srv/bench/tree"
source = "tree/"

TOML
	for i in $(seq -w 0 19); do
		echo "file $i of the tree" > "$nt_site/files/tree/t$i"
		mkdir -p "$nt_root/proc/sys/herdbench"; echo 0 > "$nt_root/proc/sys/herdbench/p$i"
		ssh-keygen -q -t ed25519 -N '' -C "bench-$i" -f "$keys/k$i"
		key=$(cut -d' ' -f1,2 "$keys/k$i.pub")
		cat >> "$role" <<TOML
[[line]]
path = "/srv/bench/new/lines.conf"
line = "option$i = on"
require = ["file:/srv/bench/new"]

[[ini]]
path = "/srv/bench/new/app.ini"
section = "bench"
setting = "key$i"
value = "$i"
require = ["file:/srv/bench/new"]

[[cron]]
name = "bench-$i"
schedule = "$((10#$i)) 3 * * *"
command = "true"
require = ["file:/etc/cron.d"]

[[sysctl]]
name = "herdbench.p$i"
value = "1"
require = ["file:/etc/sysctl.d"]

[[mount]]
name = "/srv/bench/mnt$i"
device = "tmpfs"
fstype = "tmpfs"
options = "size=1m"
ensure = "present"

[[authorized_key]]
name = "bench-$i"
user = "bench"
key = "$key"

[[apt_repository]]
name = "bench-$i"
uris = ["https://deb.example.com/bench-$i"]
suites = ["bookworm"]
components = ["main"]
key = "bench.asc"

TOML
	done
	rm -rf "$keys" # the private keys are not needed past this point
	nt_cmd="$work/herd-agent apply --site $nt_site --root $nt_root --node bench"
	$nt_cmd >/dev/null 2>&1 || true
	$nt_cmd > "$work/nt.second" 2>&1 || { echo "the new types variant's second run was not a no-change run:"; cat "$work/nt.second"; exit 1; }
	hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/nt.json" "$nt_cmd" >/dev/null 2>&1
	# The plain 200 again, measured right beside it, so that the ratio
	# compares runs made under the same load.
	hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/plain.json" "$herd_cmd" >/dev/null 2>&1
	read -r med plain ratio < <(python3 -c "
import json,statistics
m=lambda f: statistics.median(json.load(open(f))['results'][0]['times'])*1000
a,b=m('$work/nt.json'),m('$work/plain.json')
print('%.1f %.1f %.2f'%(a,b,a/b))")
	rss=$(median_rss "$nt_cmd")
	echo "| herd (no-change, 200 + 20 each of line, ini, cron, sysctl, mount, authorized_key, apt_repository, a 20-file tree) | $med ms | $(awk "BEGIN {printf \"%.1f MiB\", $rss/1024}") |"
	echo
	echo "new types' no-change run: $med ms, the plain 200's beside it $plain ms: ${ratio}x (target ≤ 1.5x)"
	if command -v strace >/dev/null; then
		strace -f -qq -e trace=execve -o "$work/nt.strace" $nt_cmd >/dev/null 2>&1 || true
		execs=$(grep -c 'execve(' "$work/nt.strace")
		echo "processes executed by one no-change run with the new types (strace -f -e execve, the herd binary itself included): $execs (target: 1)"
		[ "$execs" -le 1 ] || grep 'execve(' "$work/nt.strace" | sed 's/^/  /' | head -20
	fi
fi
