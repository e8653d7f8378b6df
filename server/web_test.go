package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
)

// webClient is an HTTPS client of s's HTTP port that trusts its CA,
// presents cert when not nil, and follows no redirect (tests look at
// them).
func webClient(t testing.TB, s *Server, cert *tls.Certificate) *http.Client {
	t.Helper()
	conf := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// webResp is a response read whole.
type webResp struct {
	code   int
	header http.Header
	body   string
}

// webDo sends a request to s's HTTP port: method, path (with query),
// a form body when form is not nil, and extra headers.
func webDo(t testing.TB, c *http.Client, s *Server, method, path string, form url.Values, header map[string]string) webResp {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "https://"+s.HTTPAddr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return webResp{resp.StatusCode, resp.Header, string(b)}
}

// addLogin gives s a login name with password.
func addLogin(t testing.TB, s *Server, name, password string) {
	t.Helper()
	hash, err := HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetLogin(context.Background(), s.st, name, hash); err != nil {
		t.Fatal(err)
	}
}

// signIn logs name in and returns the session cookie header value.
func signIn(t testing.TB, c *http.Client, s *Server, name, password string) string {
	t.Helper()
	r := webDo(t, c, s, "POST", "/login", url.Values{"name": {name}, "password": {password}}, nil)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("POST /login as %s = %d %s: %s; want 303 to /", name, r.code, r.header.Get("Location"), r.body)
	}
	for _, sc := range r.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(sc)
		if err != nil {
			t.Fatal(err)
		}
		if c.Name == sessionCookie {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("POST /login set no %s cookie: %v", sessionCookie, r.header.Values("Set-Cookie"))
	return ""
}

// apiError returns the "error" of a JSON error body, failing the test
// when the body is not one.
func apiError(t testing.TB, r webResp) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	return e.Error
}

// webServer is a real server with one node, a-01, checked in with facts
// and a report, so that there is a fleet to leak.
func webServer(t *testing.T) *Server {
	t.Helper()
	s, _ := startServer(t)
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	checkin(t, nc, map[string]any{"os": map[string]any{"family": "debian"}, "secret": "fact-value-of-a-01"}, "")
	r := &herdv1.Report{RunId: "run-1", Version: "v", Summary: &herdv1.Summary{Resources: 1, InSync: 1}}
	if _, err := nc.SendReport(context.Background(), &herdv1.SendReportRequest{Report: r}); err != nil {
		t.Fatal(err)
	}
	return s
}

// fleetPaths are every path of the HTTP port that shows the fleet.
var fleetPaths = []string{
	"/", "/api/v1/nodes", "/api/v1/nodes?where=" + url.QueryEscape(`os.family == "debian"`), "/api/v1/nodes/a-01/facts",
	"/api/v1/nodes/a-01/reports", "/api/v1/nodes/a-01/catalog", "/api/v1/facts?fact=secret",
	"/api/v1/rollouts", "/api/v1/rollouts/1", "/api/v1/nope", "/nodes/a-01",
}

// TestHTTPNothingWithoutSignIn: over TLS without a certificate or a
// session, over plain HTTP, with a node's certificate, with a forged
// cookie: no path answers with the fleet.
func TestHTTPNothingWithoutSignIn(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	node := enroll(t, s, "b-01")
	anon, asNode := webClient(t, s, nil), webClient(t, s, &node)
	forged := map[string]string{"Cookie": sessionCookie + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range fleetPaths {
		for _, tc := range []struct {
			name   string
			c      *http.Client
			header map[string]string
			want   int
		}{
			{"anonymous", anon, nil, http.StatusUnauthorized},
			{"forged cookie", anon, forged, http.StatusUnauthorized},
			{"node certificate", asNode, nil, http.StatusForbidden},
		} {
			r := webDo(t, tc.c, s, "GET", p, nil, tc.header)
			if strings.Contains(r.body, "a-01") || strings.Contains(r.body, "fact-value") {
				t.Errorf("%s GET %s = %d, shows the fleet: %s", tc.name, p, r.code, r.body)
			}
			switch {
			case strings.HasPrefix(p, "/api/"):
				if r.code != tc.want {
					t.Errorf("%s GET %s = %d, want %d", tc.name, p, r.code, tc.want)
				}
				apiError(t, r)
			case r.code == http.StatusSeeOther:
				if loc := r.header.Get("Location"); loc != "/login" && tc.want == http.StatusUnauthorized {
					t.Errorf("%s GET %s redirects to %q, want /login", tc.name, p, loc)
				}
			case r.code != tc.want:
				t.Errorf("%s GET %s = %d, want %d or a redirect to /login", tc.name, p, r.code, tc.want)
			}
		}
		// Plain HTTP: a redirect to https, no content.
		resp, err := plain.Get("http://" + s.HTTPAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "https://" + s.HTTPAddr + p
		// (The redirect's body repeats the URL asked for, nothing more.)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want || strings.Contains(string(b), "fact-value") {
			t.Errorf("plain GET %s = %d to %q: %s; want 308 to %s", p, resp.StatusCode, resp.Header.Get("Location"), b, want)
		}
	}
	// A password never goes over plain HTTP.
	resp, err := plain.PostForm("http://"+s.HTTPAddr+"/login", url.Values{"name": {"ops"}, "password": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("plain POST /login = %d, want 403", resp.StatusCode)
	}
}

// TestHTTPHealthAndMetricsUnchanged: /healthz and /metrics answer in
// plain HTTP without sign-in, as before, and over TLS too.
func TestHTTPHealthAndMetricsUnchanged(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	for _, p := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + s.HTTPAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("plain GET %s = %d: %s", p, resp.StatusCode, b)
		}
		if p == "/metrics" && !strings.Contains(string(b), "herd_checkins_total") {
			t.Errorf("plain GET /metrics lacks herd_checkins_total")
		}
		if r := webDo(t, webClient(t, s, nil), s, "GET", p, nil, nil); r.code != http.StatusOK {
			t.Errorf("https GET %s = %d", p, r.code)
		}
	}
}

// TestHTTPAdminCertificate: an admin certificate reads the API; once
// revoked it is refused with the reason.
func TestHTTPAdminCertificate(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	ctx := context.Background()
	certPEM, keyPEM, err := s.ca.IssueAdmin(ctx, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := webClient(t, s, &adm)
	r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, nil)
	if r.code != http.StatusOK || !strings.Contains(r.body, `"name":"a-01"`) {
		t.Fatalf("GET /api/v1/nodes with an admin certificate = %d: %s", r.code, r.body)
	}
	if r := webDo(t, c, s, "GET", "/", nil, nil); r.code != http.StatusOK || !strings.Contains(r.body, "Signed in as auditor") {
		t.Errorf("GET / with an admin certificate = %d: %s", r.code, r.body)
	}
	if err := s.ca.Revoke(ctx, "auditor"); err != nil {
		t.Fatal(err)
	}
	// A new connection: the revoked certificate passes the handshake
	// (so it can be told why) and every request is refused.
	c = webClient(t, s, &adm)
	r = webDo(t, c, s, "GET", "/api/v1/nodes", nil, nil)
	if r.code != http.StatusUnauthorized || !strings.Contains(apiError(t, r), "revoked") || strings.Contains(r.body, "a-01") {
		t.Errorf("GET /api/v1/nodes with a revoked admin certificate = %d: %s; want 401 naming the revocation", r.code, r.body)
	}
}

// TestHTTPLoginLogout: a wrong password is refused; the right one gives a
// Secure, HttpOnly, SameSite=Strict session cookie that reads the API
// until logout ends it, server-side.
func TestHTTPLoginLogout(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	addLogin(t, s, "ops", "correct horse battery")
	c := webClient(t, s, nil)

	for _, tc := range []struct{ name, password string }{
		{"ops", "wrong password here"},
		{"nobody", "correct horse battery"},
	} {
		r := webDo(t, c, s, "POST", "/login", url.Values{"name": {tc.name}, "password": {tc.password}}, nil)
		if r.code != http.StatusUnauthorized || len(r.header.Values("Set-Cookie")) != 0 || !strings.Contains(r.body, "wrong name or password") {
			t.Errorf("POST /login as %s with a wrong password = %d, cookies %v: %s", tc.name, r.code, r.header.Values("Set-Cookie"), r.body)
		}
	}
	if r := webDo(t, c, s, "POST", "/login", url.Values{"name": {"ops"}, "password": {"x"}, "admin": {"1"}}, nil); r.code != http.StatusBadRequest {
		t.Errorf("POST /login with an unknown field = %d, want 400", r.code)
	}

	r := webDo(t, c, s, "POST", "/login", url.Values{"name": {"ops"}, "password": {"correct horse battery"}}, nil)
	var cookie *http.Cookie
	for _, sc := range r.header.Values("Set-Cookie") {
		if ck, err := http.ParseSetCookie(sc); err == nil && ck.Name == sessionCookie {
			cookie = ck
		}
	}
	if r.code != http.StatusSeeOther || cookie == nil {
		t.Fatalf("POST /login = %d, cookie %v: %s", r.code, cookie, r.body)
	}
	if !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" || len(cookie.Value) != 43 {
		t.Errorf("session cookie = %+v; want Secure, HttpOnly, SameSite=Strict, Path=/, 32 random bytes", cookie)
	}
	session := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
	if r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, session); r.code != http.StatusOK || !strings.Contains(r.body, "a-01") {
		t.Fatalf("GET /api/v1/nodes with the session = %d: %s", r.code, r.body)
	}
	r = webDo(t, c, s, "GET", "/", nil, session)
	if !strings.Contains(r.body, "Signed in as ops") || !strings.Contains(r.body, `action="/logout"`) {
		t.Errorf("GET / with the session = %d: %s", r.code, r.body)
	}
	for _, h := range []string{"Strict-Transport-Security", "Content-Security-Policy", "X-Frame-Options"} {
		if r.header.Get(h) == "" {
			t.Errorf("GET / over TLS: no %s header", h)
		}
	}
	// The store keeps the cookie's hash, never the cookie.
	id, _ := sessionID(cookie.Value)
	if ws, ok, err := s.st.Session(context.Background(), id); err != nil || !ok || ws.Name != "ops" {
		t.Errorf("stored session = %+v, %v, %v", ws, ok, err)
	}
	if _, ok, _ := s.st.Session(context.Background(), cookie.Value); ok {
		t.Error("the store holds the cookie's value itself")
	}

	r = webDo(t, c, s, "POST", "/logout", nil, session)
	if r.code != http.StatusSeeOther || !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "Max-Age=0") {
		t.Errorf("POST /logout = %d, Set-Cookie %v", r.code, r.header.Values("Set-Cookie"))
	}
	// The old cookie, replayed, is refused: the session ended server-side.
	if r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, session); r.code != http.StatusUnauthorized || !strings.Contains(apiError(t, r), "session ended") {
		t.Errorf("GET /api/v1/nodes after logout = %d: %s", r.code, r.body)
	}
}

// TestHTTPSessionExpires: past its expiry a session is refused, although
// the browser still sends the cookie.
func TestHTTPSessionExpires(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	addLogin(t, s, "ops", "correct horse battery")
	c := webClient(t, s, nil)
	cookie := map[string]string{"Cookie": signIn(t, c, s, "ops", "correct horse battery")}
	if r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, cookie); r.code != http.StatusOK {
		t.Fatalf("GET /api/v1/nodes with a fresh session = %d: %s", r.code, r.body)
	}
	later := time.Now().Add(defaultSessionTTL + time.Second)
	s.web.now = func() time.Time { return later }
	r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, cookie)
	if r.code != http.StatusUnauthorized || !strings.Contains(apiError(t, r), "expired") {
		t.Errorf("GET /api/v1/nodes with an expired session = %d: %s", r.code, r.body)
	}
	if r := webDo(t, c, s, "GET", "/nodes", nil, cookie); r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Errorf("GET /nodes with an expired session = %d to %q, want a redirect to /login", r.code, r.header.Get("Location"))
	}
}

// TestHTTPLoginRateLimit: failed logins are limited per name (the right
// password included, once over) and per client address, until the
// window passes.
func TestHTTPLoginRateLimit(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	addLogin(t, s, "ops", "correct horse battery")
	c := webClient(t, s, nil)
	login := func(name, password string) webResp {
		return webDo(t, c, s, "POST", "/login", url.Values{"name": {name}, "password": {password}}, nil)
	}
	for i := range maxFailsPerName {
		if r := login("ops", "wrong password"); r.code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i, r.code)
		}
	}
	r := login("ops", "correct horse battery")
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || len(r.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("login past %d failures = %d (Retry-After %q): %s; want 429", maxFailsPerName, r.code, r.header.Get("Retry-After"), r.body)
	}
	// Other names from this address, until the address's limit.
	for i := maxFailsPerName; i < maxFailsPerAddr; i++ {
		if r := login("guess-"+string(rune('a'+i)), "wrong password"); r.code != http.StatusUnauthorized {
			t.Fatalf("address failure %d = %d, want 401", i, r.code)
		}
	}
	if r := login("other", "whatever password"); r.code != http.StatusTooManyRequests {
		t.Errorf("login from an address past %d failures = %d, want 429", maxFailsPerAddr, r.code)
	}
	later := time.Now().Add(failWindow + time.Second)
	s.web.now = func() time.Time { return later }
	if r := login("ops", "correct horse battery"); r.code != http.StatusSeeOther {
		t.Errorf("login after the window = %d: %s; want 303", r.code, r.body)
	}
}

// TestHTTPLoginCSRF: a login or logout POST another site's page makes is
// refused, by Sec-Fetch-Site or by Origin.
func TestHTTPLoginCSRF(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	addLogin(t, s, "ops", "correct horse battery")
	c := webClient(t, s, nil)
	cookie := signIn(t, c, s, "ops", "correct horse battery")
	form := url.Values{"name": {"ops"}, "password": {"correct horse battery"}}
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site fetch", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"foreign origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"same origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://" + s.HTTPAddr}, http.StatusSeeOther},
	} {
		r := webDo(t, c, s, "POST", "/login", form, tc.header)
		if r.code != tc.want {
			t.Errorf("%s: POST /login = %d, want %d: %s", tc.name, r.code, tc.want, r.body)
		}
		if tc.want == http.StatusForbidden && len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("%s: a refused login set a cookie", tc.name)
		}
		h := map[string]string{"Cookie": cookie}
		for k, v := range tc.header {
			h[k] = v
		}
		if tc.want == http.StatusForbidden {
			if r := webDo(t, c, s, "POST", "/logout", nil, h); r.code != http.StatusForbidden {
				t.Errorf("%s: POST /logout = %d, want 403", tc.name, r.code)
			}
		}
	}
	// The session survived the forged logouts.
	if r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, map[string]string{"Cookie": cookie}); r.code != http.StatusOK {
		t.Errorf("the session after refused logouts: GET /api/v1/nodes = %d", r.code)
	}
}

// TestLoginCredentialsChecked: stored hashes are argon2id, checked by
// the password; a new password ends the name's sessions; names and
// hashes from outside are checked.
func TestLoginCredentialsChecked(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	ctx := context.Background()
	addLogin(t, s, "ops", "first password!")
	hash, ok, err := s.st.Login(ctx, "ops")
	if err != nil || !ok || !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(hash, "first password") {
		t.Fatalf("stored hash = %q, %v, %v", hash, ok, err)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"first password!", true}, {"first password", false}, {"", false}} {
		if got, err := checkPassword(hash, tc.pw); err != nil || got != tc.want {
			t.Errorf("checkPassword(%q) = %v, %v; want %v", tc.pw, got, err, tc.want)
		}
	}
	c := webClient(t, s, nil)
	cookie := map[string]string{"Cookie": signIn(t, c, s, "ops", "first password!")}
	addLogin(t, s, "ops", "second password!")
	if r := webDo(t, c, s, "GET", "/api/v1/nodes", nil, cookie); r.code != http.StatusUnauthorized {
		t.Errorf("a session from before the password changed = %d, want 401", r.code)
	}
	for _, tc := range []struct{ name, hash string }{
		{"../etc", hash},
		{"", hash},
		{"ops", "plain"},
		{"ops", "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"},
	} {
		if err := SetLogin(ctx, s.st, tc.name, tc.hash); err == nil {
			t.Errorf("SetLogin(%q, %q) = nil, want an error", tc.name, tc.hash)
		}
	}
	if _, err := HashPassword("short"); err == nil {
		t.Error("HashPassword(short) = nil error")
	}
}

// TestLoginThroughLocalSocket: SetLoginLocal stores a login through the
// running server's unix socket, and it signs in.
func TestLoginThroughLocalSocket(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	hash, err := HashPassword("through the socket")
	if err != nil {
		t.Fatal(err)
	}
	if err := SetLoginLocal(context.Background(), s.opts.Dir, "ops", hash); err != nil {
		t.Fatal(err)
	}
	if err := SetLoginLocal(context.Background(), s.opts.Dir, "ops", "not a hash"); err == nil || !strings.Contains(err.Error(), "argon2id") {
		t.Errorf("SetLoginLocal with a bad hash = %v, want a refusal", err)
	}
	signIn(t, webClient(t, s, nil), s, "ops", "through the socket")
}

// TestHTTPPortSurvivesJunk: connections that close at once, start a
// handshake and stop, or present a certificate from another CA leave the
// port serving.
func TestHTTPPortSurvivesJunk(t *testing.T) {
	t.Parallel()
	s := webServer(t)
	for _, junk := range []string{"", "\x16\x03\x01\x00\x05junk", "\x00\x01\x02", "GET / HTTP/1.1\r\nHost: x\r\n"} {
		conn, err := net.Dial("tcp", s.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(junk))
		conn.Close()
	}
	// Sent whatever the server asks for (a Go client would not send a
	// certificate the server's CA list rules out).
	stranger := selfSigned(t, "ops")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger, nil }}}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr}).Get("https://" + s.HTTPAddr + "/api/v1/nodes"); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another CA: GET /api/v1/nodes = %d, want a refused handshake", resp.StatusCode)
	}
	resp, err := http.Get("http://" + s.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz after junk = %d", resp.StatusCode)
	}
	if r := webDo(t, webClient(t, s, nil), s, "GET", "/login", nil, nil); r.code != http.StatusOK || !strings.Contains(r.body, `name="password"`) {
		t.Errorf("GET /login after junk = %d: %s", r.code, r.body)
	}
}
