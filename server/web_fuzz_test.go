package server

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzLoginRequest feeds the sign-in entry points what a client controls:
// the login form's body and content type, and the session cookie. They
// never panic; what they accept is what they promise.
func FuzzLoginRequest(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "name=ops&password=correct+horse", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("application/x-www-form-urlencoded", "name=ops&name=root&password=x", "")
	f.Add("application/x-www-form-urlencoded", "name=..%2F&password=%00", "%%%")
	f.Add("application/x-www-form-urlencoded", "name=ops&password=x&admin=1", "a=b; c")
	f.Add("multipart/form-data; boundary=x", "--x\r\n", strings.Repeat("_", 43))
	f.Add("application/x-www-form-urlencoded", "name=ops;password=x&%zz", "\x00\xff")
	f.Fuzz(func(t *testing.T, contentType, body, cookie string) {
		req := httptest.NewRequest("POST", "/login", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		name, password, err := parseLoginForm(req)
		if err == nil {
			if CheckLoginName(name) != nil || password == "" || len(password) > maxPasswordLen {
				t.Errorf("parseLoginForm(%q) accepted name %q, password of %d bytes", body, name, len(password))
			}
		}
		id, ok := sessionID(cookie)
		if ok && (len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "") {
			t.Errorf("sessionID(%q) = %q, not a hex SHA-256", cookie, id)
		}
		// The cookie as a browser sends it, through net/http's parsing.
		hr := httptest.NewRequest("GET", "/", nil)
		hr.Header.Set("Cookie", sessionCookie+"="+cookie)
		if c, err := hr.Cookie(sessionCookie); err == nil {
			sessionID(c.Value)
		}
	})
}

// FuzzParsePHC: a stored password hash from a tampered store or the local
// socket never panics the parser, and what it accepts is within the
// bounds that keep a sign-in from asking for gigabytes.
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U")
	f.Add("$argon2id$v=19$m=4194304,t=1,p=1$c2FsdA$a2V5")
	f.Add("$argon2i$v=19$m=19456,t=2,p=1$$")
	f.Add("$argon2id$v=19$m=19456,t=2,p=1,x=3$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePHC(s)
		if err != nil {
			return
		}
		if p.memory > 256*1024 || p.time > 16 || p.threads > 8 || p.threads < 1 || len(p.salt) < 8 || len(p.key) < 16 {
			t.Errorf("parsePHC(%q) accepted %+v", s, p)
		}
	})
}
