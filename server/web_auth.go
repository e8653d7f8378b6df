package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
)

// sessionCookie is the session's cookie. The __Host- prefix makes
// browsers refuse it unless it is Secure, for path / and without a
// Domain: no other site or plain-HTTP page can set it.
const sessionCookie = "__Host-herd_session"

// Sign-in limits: failed logins per client address and per name within
// failWindow, past which further tries are refused until the window ends.
const (
	defaultSessionTTL = 12 * time.Hour
	failWindow        = 15 * time.Minute
	maxFailsPerName   = 5
	maxFailsPerAddr   = 20
	// maxLimiterKeys bounds the limiter's memory; past it, the oldest
	// windows are dropped first.
	maxLimiterKeys = 10000
	// maxLoginForm bounds a login request's body.
	maxLoginForm = 4 << 10
)

// webAuth is the HTTP port's sign-in: admin certificates, logins and
// their sessions.
type webAuth struct {
	s   *Server
	ttl time.Duration
	// now is the clock of session expiry and the limiter (tests move it).
	now func() time.Time
	// hashSlots bounds the argon2id hashes running at once: each takes
	// 19 MiB and a core.
	hashSlots chan struct{}
	limit     limiter
	logins    *prometheus.CounterVec // by outcome
	// dummy is a hash checked when the name has no login, so that a
	// wrong name costs as long as a wrong password; made at the first
	// such sign-in, not at every start.
	dummy func() string
}

func newWebAuth(s *Server) *webAuth {
	dummy := sync.OnceValue(func() string {
		h, _ := HashPassword(GeneratePassword()) // a generated password is never too short
		return h
	})
	a := &webAuth{s: s, ttl: defaultSessionTTL, now: time.Now, hashSlots: make(chan struct{}, 2), dummy: dummy,
		limit: limiter{fails: map[string]*window{}},
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_http_logins_total", Help: "Sign-ins on the HTTP port, by outcome (ok, refused, limited).",
		}, []string{"outcome"}),
	}
	s.metrics.reg.MustRegister(a.logins)
	return a
}

// webUser is who a request on the HTTP port comes from.
type webUser struct {
	Name string
	// Via is "certificate" or "session".
	Via string
}

type webUserKey struct{}

// WebUser returns who signed in for a request the HTTP port authenticated
// (the dashboard shows it); ok is false outside one.
func WebUser(ctx context.Context) (name string, ok bool) {
	u, ok := ctx.Value(webUserKey{}).(webUser)
	return u.Name, ok
}

// errNoCredentials is a request with neither an admin certificate nor a
// session.
var errNoCredentials = errors.New("sign in: this needs an admin client certificate or a session (POST /login)")

// authenticate finds who r comes from: an admin client certificate,
// checked by the CA as the Admin gRPC service checks it (revocation
// included), or a session cookie.
func (a *webAuth) authenticate(r *http.Request) (webUser, int, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := a.s.ca.VerifyClient(r.Context(), r.TLS.PeerCertificates)
		if errors.Is(err, ca.ErrRevoked) {
			return webUser{}, http.StatusUnauthorized, fmt.Errorf("%v: an operator revoked this certificate", err)
		}
		if err != nil {
			return webUser{}, http.StatusUnauthorized, fmt.Errorf("certificate refused: %v", err)
		}
		if !id.Admin {
			return webUser{}, http.StatusForbidden, errors.New("this needs an admin certificate; a node's certificate reads nothing of the fleet")
		}
		return webUser{Name: id.Name, Via: "certificate"}, 0, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return webUser{}, http.StatusUnauthorized, errNoCredentials
	}
	id, ok := sessionID(c.Value)
	if !ok {
		return webUser{}, http.StatusUnauthorized, errors.New("sign in again: the session cookie is not one this server gave")
	}
	ws, ok, err := a.s.st.Session(r.Context(), id)
	if err != nil {
		return webUser{}, http.StatusInternalServerError, err
	}
	if !ok {
		return webUser{}, http.StatusUnauthorized, errors.New("sign in again: the session ended")
	}
	if !a.now().Before(ws.Expires) {
		return webUser{}, http.StatusUnauthorized, errors.New("sign in again: the session expired")
	}
	return webUser{Name: ws.Name, Via: "session"}, 0, nil
}

// sessionID returns the store's key for a cookie value: the SHA-256 of
// the 32 random bytes it encodes. ok is false for a value this server
// could not have made.
func sessionID(cookie string) (string, bool) {
	if len(cookie) != 43 { // 32 bytes, unpadded base64url
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(cookie)
	if err != nil || len(raw) != 32 {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// clientAddr is the address failed logins are counted by: the peer's IP
// (no forwarded-for header is believed), IPv6 by its /64, which one
// host usually holds whole.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// login is POST /login: name and password from a form; a session cookie
// and a redirect to / on success.
func (a *webAuth) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	name, password, err := parseLoginForm(r)
	if err != nil {
		a.loginPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	addr := clientAddr(r)
	now := a.now()
	if wait := a.limit.blocked(now, limitKey{"name:" + name, maxFailsPerName}, limitKey{"addr:" + addr, maxFailsPerAddr}); wait > 0 {
		a.logins.WithLabelValues("limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+1)))
		a.loginPage(w, r, http.StatusTooManyRequests, "too many failed sign-ins; try again in "+wait.Round(time.Second).String())
		return
	}
	ok, err := a.check(r.Context(), name, password)
	if err != nil {
		a.s.log.Error("checking a login", "name", name, "err", err)
		a.loginPage(w, r, http.StatusInternalServerError, "the server could not check the password; see its log")
		return
	}
	if !ok {
		a.limit.fail(now, "name:"+name, "addr:"+addr)
		a.logins.WithLabelValues("refused").Inc()
		a.s.log.Warn("refused a sign-in", "name", name, "remote", r.RemoteAddr)
		a.loginPage(w, r, http.StatusUnauthorized, "wrong name or password")
		return
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	value := base64.RawURLEncoding.EncodeToString(raw)
	id, _ := sessionID(value)
	ws := store.WebSession{ID: id, Name: name, Created: now, Expires: now.Add(a.ttl)}
	if err := a.s.st.PutSession(r.Context(), ws); err != nil {
		a.s.log.Error("storing a session", "name", name, "err", err)
		a.loginPage(w, r, http.StatusInternalServerError, "the server could not store the session; see its log")
		return
	}
	a.logins.WithLabelValues("ok").Inc()
	a.s.log.Info("signed in", "name", name, "remote", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Expires: ws.Expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// parseLoginForm reads a login form's name and password; anything else
// in it is an error.
func parseLoginForm(r *http.Request) (name, password string, err error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		return "", "", fmt.Errorf("the login form is application/x-www-form-urlencoded, not %q", ct)
	}
	if err := r.ParseForm(); err != nil {
		return "", "", fmt.Errorf("reading the login form: %v", err)
	}
	if len(r.URL.RawQuery) > 0 {
		return "", "", errors.New("the login form goes in the body, not the URL")
	}
	for k, v := range r.PostForm {
		if k != "name" && k != "password" {
			return "", "", fmt.Errorf("the login form has a field %q: it takes name and password", k)
		}
		if len(v) != 1 {
			return "", "", fmt.Errorf("the login form has %d values for %q, want one", len(v), k)
		}
	}
	name, password = r.PostForm.Get("name"), r.PostForm.Get("password")
	if err := CheckLoginName(name); err != nil {
		return "", "", err
	}
	if password == "" || len(password) > maxPasswordLen {
		return "", "", errors.New("the login form needs a password (at most 1024 bytes)")
	}
	return name, password, nil
}

// check says whether password is name's, hashing once either way.
func (a *webAuth) check(ctx context.Context, name, password string) (bool, error) {
	hash, found, err := a.s.st.Login(ctx, name)
	if err != nil {
		return false, err
	}
	if !found {
		hash = a.dummy()
	}
	select {
	case a.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-a.hashSlots }()
	ok, err := checkPassword(hash, password)
	if err != nil {
		return false, fmt.Errorf("the stored hash of %s: %w", name, err)
	}
	return ok && found, nil
}

// logout is POST /logout: it ends the session and clears the cookie.
func (a *webAuth) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if id, ok := sessionID(c.Value); ok {
			if err := a.s.st.DeleteSession(r.Context(), id); err != nil {
				a.s.log.Error("ending a session", "err", err)
				writeText(w, http.StatusInternalServerError, "the server could not end the session; see its log")
				return
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herd: sign in</title></head>
<body><h1>Herd</h1>
{{if .User}}<p>Signed in as {{.User}} (by {{.Via}}).</p>
{{if eq .Via "session"}}<form method="post" action="/logout"><button>Sign out</button></form>{{end}}
{{else}}{{if .Message}}<p role="alert">{{.Message}}</p>{{end}}
<form method="post" action="/login">
<label>Name <input name="name" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button>Sign in</button></form>
<p>Or present an admin client certificate (herd ca admin NAME).</p>{{end}}
</body></html>
`))

// loginPage writes the sign-in page (or "signed in as" for a user).
func (a *webAuth) loginPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	data := struct{ User, Via, Message string }{Message: msg}
	if u, ok := r.Context().Value(webUserKey{}).(webUser); ok {
		data.User, data.Via = u.Name, u.Via
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	loginTmpl.Execute(w, data)
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// limiter counts failed sign-ins per key within failWindow.
type limiter struct {
	mu    sync.Mutex
	fails map[string]*window
}

type window struct {
	start time.Time
	n     int
}

// limitKey is a key failures are counted by and its limit.
type limitKey struct {
	key string
	max int
}

// blocked returns how long until every key that reached its limit may
// try again; 0 when none has.
func (l *limiter) blocked(now time.Time, keys ...limitKey) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		w := l.fails[k.key]
		if w == nil || now.Sub(w.start) >= failWindow || w.n < k.max {
			continue
		}
		wait = max(wait, w.start.Add(failWindow).Sub(now))
	}
	return wait
}

// fail counts one failure against each key.
func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails)+len(keys) > maxLimiterKeys {
		for k, w := range l.fails {
			if now.Sub(w.start) >= failWindow {
				delete(l.fails, k)
			}
		}
		// Still full: an attacker with many addresses and names; the
		// windows that started first go first.
		for len(l.fails)+len(keys) > maxLimiterKeys {
			var oldest string
			var at time.Time
			for k, w := range l.fails {
				if oldest == "" || w.start.Before(at) {
					oldest, at = k, w.start
				}
			}
			delete(l.fails, oldest)
		}
	}
	for _, k := range keys {
		w := l.fails[k]
		if w == nil || now.Sub(w.start) >= failWindow {
			w = &window{start: now}
			l.fails[k] = w
		}
		w.n++
	}
}
