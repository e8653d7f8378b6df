package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// ParseServers reads a list of server addresses, host:port each,
// separated by commas (as the Server options and --server take them):
// the agent talks to one at a time and moves to the next on failure.
// An empty entry, a missing or bad port, a host with spaces or control
// characters and a repeated address are errors naming the entry.
func ParseServers(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no server address")
	}
	parts := strings.Split(s, ",")
	out := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if err := checkServerAddr(p); err != nil {
			return nil, fmt.Errorf("server address %d %q: %w", i+1, p, err)
		}
		if seen[p] {
			return nil, fmt.Errorf("server address %d %q: listed twice", i+1, p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// checkServerAddr checks one host:port.
func checkServerAddr(a string) error {
	if a == "" {
		return errors.New("empty (a stray comma?)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("want host:port (an IPv6 address in brackets: [::1]:8140)")
	}
	if host == "" {
		return errors.New("no host")
	}
	// A host name, an IPv4 or an IPv6 address (with a zone): nothing
	// that would need quoting in agent.toml or a log line.
	if i := strings.IndexFunc(host, func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) || strings.ContainsRune(".-_:%", r))
	}); i >= 0 {
		_, n := utf8.DecodeRuneInString(host[i:])
		return fmt.Errorf("the host has %q, which no host name or address has", host[i:i+n])
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("bad port %q: want 1-65535", port)
	}
	return nil
}

// serverAddrKey is the attribute that carries an address's configured
// host:port into the TLS handshake, for the log of which server is used.
type serverAddrKey struct{}

// resolverScheme names the agent's own resolver: the configured list is
// handed to gRPC as is, with no DNS-SRV or balancer config of our own.
const resolverScheme = "herd-servers"

// dialServers opens (lazily) one gRPC channel over the server addresses
// in addrs (a comma-separated list, ParseServers). gRPC's pick_first
// policy does the failover: it keeps one connection to one server, and
// when that connection fails (refused, reset, a keepalive that got no
// answer) the next call tries the addresses in order from the first, the
// next one after a quarter of a second even while an attempt hangs, and
// sticks with the first that answers. The reconnect backoff of
// dialOptions applies between full rounds, not between addresses.
//
// tlsFor returns the TLS configuration of a handshake with the server
// whose certificate must carry name: each address's host, or override
// for every address when it is set. log says which server the agent
// talks to whenever that changes.
func dialServers(addrs, override string, tlsFor func(name string) *tls.Config, log *slog.Logger) (*grpc.ClientConn, error) {
	list, err := ParseServers(addrs)
	if err != nil {
		return nil, err
	}
	state := resolver.State{}
	for _, a := range list {
		state.Addresses = append(state.Addresses, resolver.Address{
			Addr: a,
			// ServerName is the handshake's authority: the name the
			// certificate is verified against, per address.
			ServerName: serverName(a, override),
			Attributes: attributes.New(serverAddrKey{}, a),
		})
	}
	r := manual.NewBuilderWithScheme(resolverScheme)
	r.InitialState(state)
	creds := &serversCreds{
		TransportCredentials: credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13}),
		tlsFor:               tlsFor, log: log, mu: new(sync.Mutex), last: new(string),
	}
	conn, err := grpc.NewClient(resolverScheme+":///"+list[0], append(dialOptions(creds), grpc.WithResolvers(r))...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addrs, err)
	}
	return conn, nil
}

// serversCreds is TLS with a configuration per server name, so that each
// address is verified against its own host; it logs the server a
// connection was made to when that differs from the last one.
type serversCreds struct {
	credentials.TransportCredentials
	tlsFor func(name string) *tls.Config
	log    *slog.Logger

	mu   *sync.Mutex // shared by clones
	last *string
}

func (c *serversCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	name, _, err := net.SplitHostPort(authority)
	if err != nil {
		name = authority
	}
	conn, info, err := credentials.NewTLS(c.tlsFor(name)).ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	addr := raw.RemoteAddr().String()
	if hi := credentials.ClientHandshakeInfoFromContext(ctx); hi.Attributes != nil {
		if a, ok := hi.Attributes.Value(serverAddrKey{}).(string); ok {
			addr = a
		}
	}
	c.connected(addr)
	return conn, info, nil
}

func (c *serversCreds) connected(addr string) {
	if c.mu == nil || c.log == nil {
		return
	}
	c.mu.Lock()
	prev := *c.last
	*c.last = addr
	c.mu.Unlock()
	if prev != addr {
		c.log.Info("connected to a server", "server", addr, "previous", prev)
	}
}

// Clone keeps the handshake per server name and the shared log state.
func (c *serversCreds) Clone() credentials.TransportCredentials {
	cp := *c
	cp.TransportCredentials = c.TransportCredentials.Clone()
	return &cp
}
