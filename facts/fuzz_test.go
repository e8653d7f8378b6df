package facts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedFiles adds every captured tree's copy of the host file p to f's corpus.
func seedFiles(f *testing.F, p string) {
	f.Helper()
	matches, _ := filepath.Glob(filepath.Join("testdata", "*", p))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			f.Add(b)
		}
	}
}

func FuzzParseOSRelease(f *testing.F) {
	seedFiles(f, "etc/os-release")
	f.Add([]byte(`A="x\"y" B='z'`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, v := range parseOSRelease(b) {
			if !isEnvName(k) {
				t.Errorf("parseOSRelease gave key %q", k)
			}
			if strings.Contains(v, "\n") {
				t.Errorf("parseOSRelease gave a value spanning lines: %q", v)
			}
		}
	})
}

func FuzzParseMeminfo(f *testing.F) {
	seedFiles(f, "proc/meminfo")
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, v := range parseMeminfo(b) {
			if v < 0 {
				t.Errorf("parseMeminfo gave %s = %d", k, v)
			}
		}
	})
}

func FuzzParseCPUInfo(f *testing.F) {
	seedFiles(f, "proc/cpuinfo")
	f.Fuzz(func(t *testing.T, b []byte) {
		ci := parseCPUInfo(b)
		if ci.count < 0 || ci.physical < 0 || ci.count > len(b) {
			t.Errorf("parseCPUInfo gave %+v", ci)
		}
	})
}

func FuzzParseMounts(f *testing.F) {
	seedFiles(f, "proc/mounts")
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range parseMounts(b) {
			if m.fstype == "" || len(m.options) == 0 {
				t.Errorf("parseMounts gave %+v", m)
			}
		}
	})
}

func FuzzUnescapeOctal(f *testing.F) {
	f.Add(`/srv/my\040data`)
	f.Add(`\\134\0`)
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeOctal(s); len(got) > len(s) {
			t.Errorf("unescapeOctal(%q) = %q, longer than its input", s, got)
		}
	})
}

func FuzzParseRoute(f *testing.F) {
	f.Add([]byte("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\neth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := defaultRouteIface(b); strings.ContainsAny(got, " \t\n") {
			t.Errorf("defaultRouteIface gave %q", got)
		}
		if got := defaultRoute6Iface(b); strings.ContainsAny(got, " \t\n") {
			t.Errorf("defaultRoute6Iface gave %q", got)
		}
	})
}

func FuzzCanonicalName(f *testing.F) {
	seedFiles(f, "etc/hosts")
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := canonicalName(b, "web-01"); got != "" && !strings.Contains(got, ".") {
			t.Errorf("canonicalName gave the undotted %q", got)
		}
		_ = resolvDomain(b)
	})
}

func FuzzParseUptime(f *testing.F) {
	seedFiles(f, "proc/uptime")
	f.Add([]byte("NaN 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseUptime(string(b)); err == nil && n < 0 {
			t.Errorf("parseUptime(%q) = %d", b, n)
		}
		_, _ = parseBtime(b)
	})
}

func FuzzParseKeyValue(f *testing.F) {
	f.Add([]byte("a=1\nb.c = two\n# x\n"))
	f.Add([]byte("a=1\na.b=2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		facts, err := parseKeyValue(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("parseKeyValue error %q does not name a line", err)
			}
			return
		}
		for _, l := range Flatten("", facts) {
			if l.Name == "" || strings.Contains(l.Name, "..") {
				t.Errorf("parseKeyValue gave the name %q", l.Name)
			}
		}
	})
}

func FuzzParseJSONFacts(f *testing.F) {
	seedFiles(f, "etc/herd/facts.d/owner.json")
	f.Add([]byte(`{"a": [1, 2.5, 1e999, null, {"b": true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		facts, err := parseJSONFacts(b)
		if err != nil {
			return
		}
		if _, err := json.Marshal(facts); err != nil {
			t.Errorf("parseJSONFacts(%q) gave facts that do not encode: %v", b, err)
		}
		// Every name the listing prints can be looked up again (to some
		// value: {"a": {"b": 1}, "a.b": 2} names two leaves alike).
		for _, l := range Flatten("", facts) {
			if _, ok := facts.Lookup(l.Name); !ok {
				t.Errorf("Lookup(%q) of a flattened name failed in %q", l.Name, b)
			}
		}
	})
}

func FuzzParseTOMLFacts(f *testing.F) {
	seedFiles(f, "etc/herd/facts.d/site.toml")
	f.Add([]byte("a = inf\nb = 1979-05-27T07:32:00-08:00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		facts, err := parseTOMLFacts(b)
		if err != nil {
			return
		}
		if _, err := json.Marshal(facts); err != nil {
			t.Errorf("parseTOMLFacts(%q) gave facts that do not encode: %v", b, err)
		}
	})
}
