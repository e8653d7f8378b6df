package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcm/herd/server/dashboard"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP port serves /healthz and /metrics in plain HTTP, as it always
// has, and everything else (sign-in, the JSON API, the dashboard) over
// TLS on the same port. httpSniffer reads each connection's first byte:
// 0x16 opens a TLS handshake, anything else is plain HTTP.

// maxSniffing bounds the connections whose first byte is awaited at
// once; sniffTimeout how long one may take to send it.
const (
	maxSniffing  = 256
	sniffTimeout = 10 * time.Second
)

// httpSniffer accepts connections and hands each to out, wrapped in TLS
// when it starts a handshake. net/http does the handshake itself (within
// its ReadHeaderTimeout) and sets Request.TLS.
type httpSniffer struct {
	lis     net.Listener
	tlsConf *tls.Config
	out     *chanListener
	log     *slog.Logger
	busy    atomic.Int64
	wg      sync.WaitGroup
}

// serve accepts until the listener is closed; ctx ending is a clean stop.
func (h *httpSniffer) serve(ctx context.Context) error {
	defer h.out.Close()
	defer h.wg.Wait()
	for {
		c, err := h.lis.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting HTTP connections: %w", err)
		}
		if h.busy.Add(1) > maxSniffing {
			h.busy.Add(-1)
			c.Close()
			continue
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer h.busy.Add(-1)
			h.sniff(c)
		}()
	}
}

// sniff waits for c's first byte and hands c on.
func (h *httpSniffer) sniff(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(c, 16)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	var conn net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 { // TLS record type handshake
		conn = tls.Server(conn, h.tlsConf)
	}
	if !h.out.put(conn) {
		conn.Close()
	}
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// httpTLS returns the HTTP port's TLS configuration: the gRPC port's
// (server certificate, client certificates optional but checked by the
// CA, revocation left to each request), with HTTP's protocols.
func httpTLS(st *serverTLS) *tls.Config {
	c := st.config()
	c.NextProtos = []string{"h2", "http/1.1"}
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		n := st.current().Clone()
		n.NextProtos = []string{"h2", "http/1.1"}
		return n, nil
	}
	return c
}

// httpHandler is everything the HTTP port serves.
func (s *Server) httpHandler() http.Handler {
	plain := http.NewServeMux()
	plain.HandleFunc("/healthz", s.healthz)
	plain.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))

	// Behind sign-in: the API and the dashboard.
	authed := http.NewServeMux()
	s.apiRoutes(authed)
	authed.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s %s (see docs/api.md)", r.Method, r.URL.Path))
	})
	authed.Handle("/", dashboard.New(s.Dashboard(), dashboard.Options{
		Log:  s.log.With("component", "dashboard"),
		User: func(r *http.Request) (string, bool) { return WebUser(r.Context()) },
	}))

	secure := http.NewServeMux()
	secure.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		if u, _, err := s.web.authenticate(r); err == nil {
			r = r.WithContext(context.WithValue(r.Context(), webUserKey{}, u))
		}
		s.web.loginPage(w, r, http.StatusOK, "")
	})
	secure.HandleFunc("POST /login", s.web.login)
	secure.HandleFunc("POST /logout", s.web.logout)
	secure.Handle("/", s.requireSignIn(authed))

	// The login and logout POSTs change state: a request another site's
	// page makes a browser send is refused by its Sec-Fetch-Site or
	// Origin header (SameSite=Strict cookies are the second lock).
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusForbidden, "refused: a cross-origin request (this form is only accepted from the server's own pages)")
	}))
	secureH := csrf.Handler(secure)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
			plain.ServeHTTP(w, r)
			return
		}
		if r.TLS == nil {
			// Over plain HTTP nothing of the fleet, and no password, is
			// ever sent: reads move to https on the same port.
			if (r.Method == http.MethodGet || r.Method == http.MethodHead) && validHost(r.Host) {
				http.Redirect(w, r, "https://"+r.Host+r.URL.RequestURI(), http.StatusPermanentRedirect)
				return
			}
			writeText(w, http.StatusForbidden, "refused: this port serves "+r.URL.Path+" over https only")
			return
		}
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// Pages are server-rendered: no script from anywhere but this
		// origin, inline styles allowed (self-contained pages), no
		// framing, forms only to this origin.
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		h.Set("Referrer-Policy", "same-origin")
		secureH.ServeHTTP(w, r)
	})
}

// validHost says whether a Host header is a plain host[:port], safe to
// put in a redirect.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	return !strings.ContainsAny(h, "/\\@?#% \t\r\n")
}

// requireSignIn passes on requests from an admin certificate or a
// session, with the user in the context; the API answers others with a
// JSON error, pages with a redirect to /login.
func (s *Server) requireSignIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, code, err := s.web.authenticate(r)
		if err != nil {
			if code == http.StatusInternalServerError {
				s.log.Error("authenticating an HTTP request", "err", err)
				err = errors.New("the server could not check the session; see its log")
			}
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeAPIError(w, code, err.Error())
				return
			}
			if code == http.StatusUnauthorized && r.URL.Path == "/" {
				s.web.loginPage(w, r, code, "")
				return
			}
			if code == http.StatusUnauthorized && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			writeText(w, code, err.Error())
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), webUserKey{}, u)))
	})
}
