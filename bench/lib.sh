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
