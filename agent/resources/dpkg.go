package resources

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// dpkgStatusPath and dpkgUpdatesPath are dpkg's database under a host
// root: the status file, and the journal of changes an interrupted dpkg
// run has not yet folded into it.
const (
	dpkgStatusPath  = "var/lib/dpkg/status"
	dpkgUpdatesPath = "var/lib/dpkg/updates"
)

// dpkgRecord is what Herd reads of one package instance in dpkg's
// database: one stanza of the status file.
type dpkgRecord struct {
	Name      string // Package: "libc6"
	Arch      string // Architecture: "amd64", "all"; empty in very old records
	Version   string
	MultiArch string // Multi-Arch: same, foreign, allowed, or empty
	// The three words of Status: the selection (install, hold, deinstall,
	// purge, unknown), the error flag (ok, reinstreq) and the state
	// (not-installed, config-files, half-installed, unpacked,
	// half-configured, triggers-awaited, triggers-pending, installed).
	Want, Flag, State string
}

// installed reports whether the package is unpacked and configured. A
// package waiting only for triggers is installed: its files are in place
// and it was configured; dpkg runs the triggers at its next chance.
func (r dpkgRecord) installed() bool {
	switch r.State {
	case "installed", "triggers-pending", "triggers-awaited":
		return true
	}
	return false
}

// present reports whether anything of the package is left on the host,
// be it only its configuration files.
func (r dpkgRecord) present() bool { return r.State != "" && r.State != "not-installed" }

// broken reports whether a dpkg run on the package was interrupted.
func (r dpkgRecord) broken() bool {
	switch r.State {
	case "half-installed", "unpacked", "half-configured":
		return true
	}
	return r.Flag == "reinstreq"
}

// parseDpkgStatus parses a dpkg status file (or one file of its updates
// journal), in process: the point is that checking packages spawns no
// dpkg-query. It keeps only the fields Herd needs and allocates only for
// those, since a real host's status file has thousands of stanzas and
// megabytes of descriptions. Field names are matched without regard to
// case, as dpkg does. A stanza without a Package field, a Status that is
// not three words, or a line that is neither a field nor a continuation is
// an error, as it is to dpkg.
func parseDpkgStatus(data []byte) ([]dpkgRecord, error) {
	var (
		out     []dpkgRecord
		cur     dpkgRecord
		in      bool // inside a stanza
		start   int  // line where the stanza began
		lineNo  int
		hasStat bool
	)
	finish := func() error {
		if !in {
			return nil
		}
		in = false
		if cur.Name == "" {
			return fmt.Errorf("line %d: stanza without a Package field", start)
		}
		if !hasStat {
			// dpkg's available file and an updates entry may lack one; a
			// package without a Status is not installed.
			cur.Want, cur.Flag, cur.State = "unknown", "ok", "not-installed"
		}
		out = append(out, cur)
		cur, hasStat = dpkgRecord{}, false
		return nil
	}
	// One record per blank-line-separated stanza: size the slice once.
	out = make([]dpkgRecord, 0, bytes.Count(data, []byte("\n\n"))+1)
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		lineNo++
		if len(bytes.Trim(line, " \t\r")) == 0 {
			if err := finish(); err != nil {
				return nil, err
			}
			continue
		}
		switch line[0] {
		case ' ', '\t':
			// A continuation of a multi-line field (Description,
			// Conffiles): none Herd reads.
			if !in {
				return nil, fmt.Errorf("line %d: continuation line outside a stanza", lineNo)
			}
			continue
		case '#':
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, fmt.Errorf("line %d: want \"Field: value\", got %q", lineNo, dpkgClip(string(line), 60))
		}
		if !in {
			in, start = true, lineNo
		}
		field, value := line[:colon], bytes.Trim(line[colon+1:], " \t\r")
		// Dispatch on the length first: most lines are fields Herd skips.
		switch len(field) {
		case 7:
			if bytes.EqualFold(field, []byte("Package")) {
				cur.Name = string(value)
			} else if bytes.EqualFold(field, []byte("Version")) {
				cur.Version = string(value)
			}
		case 12:
			if bytes.EqualFold(field, []byte("Architecture")) {
				cur.Arch = dpkgIntern(value)
			}
		case 10:
			if bytes.EqualFold(field, []byte("Multi-Arch")) {
				cur.MultiArch = dpkgIntern(value)
			}
		case 6:
			if bytes.EqualFold(field, []byte("Status")) {
				w := bytes.Fields(value)
				if len(w) != 3 {
					return nil, fmt.Errorf("line %d: Status %q: want three words like \"install ok installed\"", lineNo, value)
				}
				cur.Want, cur.Flag, cur.State = dpkgIntern(w[0]), dpkgIntern(w[1]), dpkgIntern(w[2])
				hasStat = true
			}
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// dpkgWords are the values of Status, Architecture and Multi-Arch that
// thousands of stanzas repeat; dpkgIntern returns them without allocating.
var dpkgWords = func() map[string]string {
	m := map[string]string{}
	for _, w := range []string{
		"install", "hold", "deinstall", "purge", "unknown", "ok", "reinstreq",
		"not-installed", "config-files", "half-installed", "unpacked", "half-configured",
		"triggers-awaited", "triggers-pending", "installed",
		"all", "amd64", "arm64", "i386", "armhf", "armel", "ppc64el", "s390x", "riscv64", "mips64el",
		"same", "foreign", "allowed", "no",
	} {
		m[w] = w
	}
	return m
}()

func dpkgIntern(b []byte) string {
	if s, ok := dpkgWords[string(b)]; ok { // no allocation: the compiler sees the lookup
		return s
	}
	return string(b)
}

// dpkgClip shortens s for an error message.
func dpkgClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// dpkgDB is the parsed dpkg database of one host root. It is never changed
// once built, so Checks running in parallel share it without a lock.
type dpkgDB struct {
	byName map[string][]dpkgRecord // by package name, one entry per architecture
	native string                  // the host's native dpkg architecture
}

// newDpkgDB indexes records; a later record for the same name and
// architecture replaces an earlier one, as an updates journal entry
// replaces the status file's.
func newDpkgDB(records []dpkgRecord, native string) *dpkgDB {
	db := &dpkgDB{byName: make(map[string][]dpkgRecord, len(records)), native: native}
	for _, r := range records {
		rs := db.byName[r.Name]
		replaced := false
		for i := range rs {
			if rs[i].Arch == r.Arch {
				rs[i], replaced = r, true
				break
			}
		}
		if !replaced {
			db.byName[r.Name] = append(rs, r)
		}
	}
	return db
}

// find returns the record a package name refers to, the way dpkg resolves
// it. "name:arch" names one instance of a multi-arch package. A bare name
// prefers an installed instance of the native architecture or "all", then
// any installed instance, then whatever is left of it (configuration files,
// a half-installed unpack), so that the answer is the one an operator
// means when one name has several instances.
func (db *dpkgDB) find(name string) (dpkgRecord, bool) {
	base, arch, hasArch := strings.Cut(name, ":")
	rs := db.byName[base]
	if hasArch {
		if arch == "native" {
			arch = db.native
		}
		for _, r := range rs {
			if r.Arch == arch {
				return r, true
			}
		}
		return dpkgRecord{}, false
	}
	best, bestRank := dpkgRecord{}, 0
	for _, r := range rs {
		rank := 1
		switch {
		case r.installed() && (r.Arch == db.native || r.Arch == "all" || r.Arch == ""):
			rank = 4
		case r.installed():
			rank = 3
		case r.present():
			rank = 2
		}
		// Ties go to the smaller architecture name, so the answer does not
		// depend on the order of the file.
		if rank > bestRank || (rank == bestRank && r.Arch < best.Arch) {
			best, bestRank = r, rank
		}
	}
	return best, bestRank > 0
}

// nativeDpkgArch is dpkg's name for the architecture this agent runs on,
// known without asking `dpkg --print-architecture`, which would spawn.
func nativeDpkgArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	case "mips64le":
		return "mips64el"
	case "mipsle":
		return "mipsel"
	}
	return runtime.GOARCH // amd64, arm64, s390x, riscv64, loong64 agree
}

// dpkgKey identifies one version of a root's dpkg database on disk: dpkg
// replaces the status file by rename, so a change moves the inode, the
// mtime or the size, and it adds and removes updates journal entries,
// which moves the directory's mtime.
type dpkgKey struct {
	path       string
	ino        uint64
	size       int64
	mtime      int64 // nanoseconds
	updatesMod int64 // nanoseconds; 0 when there is no updates directory
}

// dpkgCache keeps the last parsed dpkg database so that the many package
// Checks of a run, and the runs after it while nothing was installed, share
// one parse. The zero value is empty and ready.
type dpkgCache struct {
	mu     sync.Mutex
	key    dpkgKey
	db     *dpkgDB
	parses int // how many times the database was read, for tests
}

// load returns the dpkg database of root, parsing it only when it changed
// on disk since the last call. A root without a status file has nothing
// installed. Every file is opened by the one resolution policy
// (inroot.go): a status file or journal that is a link out of the root is
// never read.
func (c *dpkgCache) load(root string) (*dpkgDB, error) {
	key := dpkgKey{path: filepath.Join(root, dpkgStatusPath)}
	st, err := statInRoot(root, dpkgStatusPath)
	switch {
	case err == nil:
		key.size, key.mtime, key.ino = st.Size, st.Mtim.Nano(), st.Ino
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading dpkg status: %w", err)
	}
	if ust, err := statInRoot(root, dpkgUpdatesPath); err == nil {
		key.updatesMod = ust.Mtim.Nano()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db != nil && c.key == key {
		return c.db, nil
	}
	db, err := readDpkgDB(root)
	if err != nil {
		return nil, err
	}
	c.key, c.db = key, db
	c.parses++
	return db, nil
}

// invalidate forgets the cached database: an Apply ran dpkg. The key would
// notice the change anyway; this also covers a filesystem whose timestamps
// are too coarse to tell two writes in the same instant apart.
func (c *dpkgCache) invalidate() {
	c.mu.Lock()
	c.db = nil
	c.mu.Unlock()
}

// maxDpkgFile bounds what is read of one file of the dpkg database: a
// status file with thousands of packages is a few megabytes.
const maxDpkgFile = 256 << 20

// readDpkgDB parses root's status file and then, in order, the updates
// journal entries an interrupted dpkg left behind, which dpkg itself
// applies on top of the status file before answering any query.
func readDpkgDB(root string) (*dpkgDB, error) {
	data, _, err := readInRoot(root, dpkgStatusPath, maxDpkgFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading dpkg status: %w", err)
	}
	records, err := parseDpkgStatus(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(root, dpkgStatusPath), err)
	}
	// A missing journal directory (a root without dpkg) is an empty one.
	names, err := readDirInRoot(root, dpkgUpdatesPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading dpkg updates journal: %w", err)
	}
	var journal []string
	for _, n := range names {
		if n != "" && strings.Trim(n, "0123456789") == "" {
			journal = append(journal, n)
		}
	}
	// Entries are zero-padded sequence numbers: name order is their order.
	sort.Strings(journal)
	for _, n := range journal {
		rel := dpkgUpdatesPath + "/" + n
		data, _, err := readInRoot(root, rel, maxDpkgFile)
		if err != nil {
			return nil, fmt.Errorf("reading dpkg updates journal: %w", err)
		}
		rs, err := parseDpkgStatus(data)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", filepath.Join(root, rel), err)
		}
		records = append(records, rs...)
	}
	return newDpkgDB(records, nativeDpkgArch()), nil
}

// debVersion is a Debian version split into its parts:
// [epoch:]upstream[-revision].
type debVersion struct {
	epoch    string // digits without leading zeros; "" is epoch 0
	upstream string
	revision string
}

// parseDebVersion splits v the way dpkg does: the epoch is what precedes
// the first colon, the revision what follows the last hyphen.
func parseDebVersion(v string) debVersion {
	v = strings.TrimSpace(v)
	var d debVersion
	if e, rest, ok := strings.Cut(v, ":"); ok {
		d.epoch, v = strings.TrimLeft(e, "0"), rest
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		d.upstream, d.revision = v[:i], v[i+1:]
	} else {
		d.upstream = v
	}
	return d
}

// validDebVersion reports why v is not a Debian version, as dpkg would
// refuse it, or "" when it is one.
func validDebVersion(v string) string {
	if v == "" {
		return "empty version"
	}
	if strings.ContainsAny(v, " \t\n") {
		return "version contains white space"
	}
	d := parseDebVersion(v)
	if e, _, ok := strings.Cut(v, ":"); ok && (e == "" || strings.Trim(e, "0123456789") != "") {
		return "epoch is not a number"
	}
	if d.upstream == "" {
		return "nothing before the revision"
	}
	if c := d.upstream[0]; c < '0' || c > '9' {
		return "version does not start with a digit"
	}
	for _, c := range d.upstream {
		if !isDebAlnum(c) && !strings.ContainsRune(".-+~:", c) {
			return fmt.Sprintf("invalid character %q in version", c)
		}
	}
	for _, c := range d.revision {
		if !isDebAlnum(c) && !strings.ContainsRune(".+~", c) {
			return fmt.Sprintf("invalid character %q in revision", c)
		}
	}
	return ""
}

func isDebAlnum(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// compareDebianVersions compares two Debian versions by dpkg's rules and
// returns -1, 0 or +1: the epoch numerically, then the upstream version
// and the revision, each as alternating runs of non-digits (compared
// character by character, letters before other characters, '~' before
// anything, even the end) and digits (compared as numbers). So
// "1.0~rc1" < "1.0" < "1.0a" < "1.0+b1", and "1:0.1" > "2.0".
//
// It is total, so that sorting never fails: a string dpkg would refuse
// still compares by the same rules.
func compareDebianVersions(a, b string) int {
	va, vb := parseDebVersion(a), parseDebVersion(b)
	// Epochs are digit strings without leading zeros: a longer one is
	// larger, and equal lengths compare as text. No overflow, whatever
	// their size.
	if c := compareNumeric(va.epoch, vb.epoch); c != 0 {
		return c
	}
	if c := verrevcmp(va.upstream, vb.upstream); c != 0 {
		return c
	}
	return verrevcmp(va.revision, vb.revision)
}

// compareNumeric compares two digit strings without leading zeros; a
// string that is not all digits compares as text after the numbers.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// debOrder is dpkg's weight of a character in the non-digit part of a
// version: '~' before the end of the string, the end (and digits, which
// end the part) before letters, letters before everything else.
func debOrder(c int) int {
	switch {
	case c == 0 || c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return c
	case c == '~':
		return -1
	}
	return c + 256
}

// verrevcmp is dpkg's verrevcmp (lib/dpkg/version.c), returning -1, 0 or +1.
func verrevcmp(a, b string) int {
	at := func(s string, i int) int {
		if i < len(s) {
			return int(s[i])
		}
		return 0
	}
	isDigit := func(c int) bool { return c >= '0' && c <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(at(a, i))) || (j < len(b) && !isDigit(at(b, j))) {
			ac, bc := debOrder(at(a, i)), debOrder(at(b, j))
			if ac != bc {
				return debSign(ac - bc)
			}
			i++
			j++
		}
		for at(a, i) == '0' {
			i++
		}
		for at(b, j) == '0' {
			j++
		}
		for isDigit(at(a, i)) && isDigit(at(b, j)) {
			if firstDiff == 0 {
				firstDiff = at(a, i) - at(b, j)
			}
			i++
			j++
		}
		if isDigit(at(a, i)) {
			return 1
		}
		if isDigit(at(b, j)) {
			return -1
		}
		if firstDiff != 0 {
			return debSign(firstDiff)
		}
	}
	return 0
}

func debSign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
