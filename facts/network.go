package facts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// collectNetworking lists the interfaces of the network namespace the agent
// runs in, and picks the primary one: the interface of the default route
// (IPv4, else IPv6), else the first one up with a global address. It is
// live even under a sandbox root, because a sandbox shares this machine's
// network, and it asks the kernel (netlink) rather than a process or DNS.
func collectNetworking(_ context.Context, _ *host) (Facts, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	out := make(map[string]any, len(ifaces))
	global := map[string][2]string{} // interface → first global IPv4, IPv6
	var order []string
	var errs []error
	for _, ifi := range ifaces {
		addrs, err := ifi.Addrs()
		if err != nil {
			errs = append(errs, fmt.Errorf("addresses of %s: %w", ifi.Name, err))
		}
		list := make([]any, 0, len(addrs))
		var g [2]string
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			ones, _ := ipn.Mask.Size()
			fam, i := "inet", 0
			if ip.Is6() {
				fam, i = "inet6", 1
			}
			list = append(list, map[string]any{
				"address": ip.String(),
				"prefix":  int64(ones),
				"netmask": net.IP(ipn.Mask).String(),
				"family":  fam,
			})
			if g[i] == "" && ip.IsGlobalUnicast() {
				g[i] = ip.String()
			}
		}
		iface := map[string]any{
			"mtu":       int64(ifi.MTU),
			"up":        ifi.Flags&net.FlagUp != 0,
			"addresses": list,
		}
		if len(ifi.HardwareAddr) > 0 {
			iface["mac"] = ifi.HardwareAddr.String()
		}
		out[ifi.Name] = iface
		global[ifi.Name] = g
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 {
			order = append(order, ifi.Name)
		}
	}

	primary := ""
	if b, err := os.ReadFile("/proc/net/route"); err == nil {
		primary = defaultRouteIface(b)
	}
	if primary == "" {
		if b, err := os.ReadFile("/proc/net/ipv6_route"); err == nil {
			primary = defaultRoute6Iface(b)
		}
	}
	if primary == "" {
		for _, name := range order {
			if g := global[name]; g[0] != "" || g[1] != "" {
				primary = name
				break
			}
		}
	}
	n := map[string]any{"interfaces": out, "primary_interface": primary}
	g := global[primary]
	n["primary_ip"], n["primary_ip6"] = g[0], g[1]
	return Facts{"networking": n}, errors.Join(errs...)
}

// defaultRouteIface returns the interface of the IPv4 default route with
// the lowest metric in /proc/net/route, or "".
func defaultRouteIface(b []byte) string {
	best, bestMetric := "", uint64(1<<64-1)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		// Iface Destination Gateway Flags RefCnt Use Metric Mask …
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		metric, err2 := strconv.ParseUint(f[6], 10, 64)
		const rtfUp = 0x1
		if err1 != nil || err2 != nil || flags&rtfUp == 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	return best
}

// defaultRoute6Iface does the same for /proc/net/ipv6_route, skipping the
// kernel's unreachable (reject) default routes on lo.
func defaultRoute6Iface(b []byte) string {
	const zero = "00000000000000000000000000000000"
	best, bestMetric := "", uint64(1<<64-1)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		// dest plen src splen gateway metric refcnt use flags iface
		if len(f) < 10 || f[0] != zero || f[1] != "00" {
			continue
		}
		metric, err1 := strconv.ParseUint(f[5], 16, 32)
		flags, err2 := strconv.ParseUint(f[8], 16, 32)
		const rtfUp, rtfReject = 0x1, 0x200
		if err1 != nil || err2 != nil || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = f[9], metric
		}
	}
	return best
}
