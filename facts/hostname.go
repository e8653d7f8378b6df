package facts

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// collectHostname reports hostname (the short name), fqdn and domain the
// way `hostname -f` finds them, but without a process or a DNS query, either
// of which can hang an agent on a host whose resolver is down: the name
// itself if it is dotted, else the canonical name /etc/hosts gives it, else
// the name plus /etc/resolv.conf's domain (or first search domain).
func collectHostname(_ context.Context, h *host) (Facts, error) {
	name, err := h.nodename()
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("the host has no name")
	}
	short, domain, _ := strings.Cut(name, ".")
	fqdn := name
	if domain == "" {
		if b, err := h.readFile("/etc/hosts"); err == nil {
			if c := canonicalName(b, short); c != "" {
				fqdn = c
				_, domain, _ = strings.Cut(c, ".")
			}
		}
	}
	if domain == "" {
		if b, err := h.readFile("/etc/resolv.conf"); err == nil {
			if domain = resolvDomain(b); domain != "" {
				fqdn = short + "." + domain
			}
		}
	}
	return Facts{"hostname": short, "fqdn": fqdn, "domain": domain}, nil
}

// nodename is the host's name: uname(2) on the real host; under a sandbox
// root its etc/hostname, else its proc/sys/kernel/hostname, else this
// machine's name.
func (h *host) nodename() (string, error) {
	if !h.live {
		for _, p := range []string{"/etc/hostname", "/proc/sys/kernel/hostname"} {
			b, err := h.readFile(p)
			if err != nil {
				continue
			}
			for line := range strings.SplitSeq(string(b), "\n") {
				// hostname(5) allows comments.
				if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
					return line, nil
				}
			}
		}
	}
	u, err := uname()
	if err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return u.nodename, nil
}

// canonicalName finds short in a hosts(5) file and returns the dotted name
// that line gives it: a name that extends short ("web1.example.com" for
// "web1"), else the line's canonical (first) name if dotted. Lines whose
// canonical name is localhost are skipped: "127.0.0.1 localhost web1" says
// nothing about web1's domain.
func canonicalName(hosts []byte, short string) string {
	for line := range strings.SplitSeq(string(hosts), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if _, err := netip.ParseAddr(fields[0]); err != nil {
			continue
		}
		names := fields[1:]
		match, extended := false, ""
		for _, n := range names {
			if strings.EqualFold(n, short) {
				match = true
			} else if len(n) > len(short)+1 && strings.EqualFold(n[:len(short)+1], short+".") {
				match = true
				if extended == "" {
					extended = n
				}
			}
		}
		if !match {
			continue
		}
		if extended != "" {
			return extended
		}
		if c := names[0]; strings.Contains(c, ".") && !strings.HasPrefix(strings.ToLower(c), "localhost") {
			return c
		}
	}
	return ""
}

// resolvDomain returns resolv.conf(5)'s local domain: the domain keyword,
// or the first search domain; the last of those lines wins, as in the
// resolver.
func resolvDomain(b []byte) string {
	domain := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "domain", "search":
			domain = strings.TrimSuffix(fields[1], ".")
		}
	}
	return domain
}
