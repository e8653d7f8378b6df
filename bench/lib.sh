# bench/lib.sh — shared by the benchmark scripts (source it).

# as_installed FILE... drops each freshly built binary from the page cache
# (and only it), so that it is measured as a binary installed on a host is
# run: loaded from disk by exec. A file the compiler has just written sits
# in the page cache in large folios, and this kernel (6.18) maps those whole
# on the first fault: every page of the binary's text and rodata then counts
# in its RSS (herd-agent facts peaked at 19.0 MiB straight after `go build`,
# 14.2 MiB once loaded from disk). cf-agent's and puppet's files are on
# disk already.
as_installed() {
	local f
	for f in "$@"; do
		sync "$f"
		dd if="$f" iflag=nocache count=0 status=none
	done
}

# median_rss CMD prints the median peak RSS of CMD in KiB over RSS_RUNS
# runs of GNU time.
median_rss() {
	local i vals=()
	for i in $(seq "$RSS_RUNS"); do
		vals+=("$(/usr/bin/time -v bash -c "$1 >/dev/null 2>&1" 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')")
	done
	printf '%s\n' "${vals[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
