package store

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTail: the store parses nothing it is sent (JSON is kept as it
// came), but it does cut event text: the cut keeps the end, stays near
// the cap, and never splits a character.
func FuzzTail(f *testing.F) {
	f.Add("short", 0)
	f.Add("é", MaxEventText)
	f.Add("日本", MaxEventText/3+1)
	f.Fuzz(func(t *testing.T, s string, repeat int) {
		if repeat < 0 || repeat > 3*MaxEventText {
			return
		}
		in := strings.Repeat("x", repeat) + s
		got := tail(in)
		if len(in) <= MaxEventText {
			if got != in {
				t.Fatalf("tail changed a short text")
			}
			return
		}
		_, kept, ok := strings.Cut(got, " bytes cut]\n")
		if !ok || !strings.HasSuffix(in, kept) || len(kept) > MaxEventText || len(kept) < MaxEventText-utf8.UTFMax {
			t.Fatalf("tail of %d bytes kept %d bytes: %q…", len(in), len(kept), got[:min(len(got), 40)])
		}
		if utf8.ValidString(in) && !utf8.ValidString(kept) {
			t.Fatalf("tail split a character")
		}
	})
}

// FuzzStoreSetting: whatever the store setting (server.toml's store, or
// --store), checking it never panics, and a password that is the URL's
// (in its user part or a password parameter) shows neither in Redact's
// answer nor in CheckLocation's error.
func FuzzStoreSetting(f *testing.F) {
	f.Add("postgres://herd:", "s3cret-pw", "@db.example.com:5432/herd?sslmode=require")
	f.Add("postgresql://herd@db/herd?password=", "s3cret-pw", "&sslmode=disable")
	f.Add("postgres://h/d?sslpassword=", "s3cret%20pw", "")
	f.Add("postgres://u:", "p%zz", "@h:99999/d")
	f.Add("mysql://u:", "s3cret-pw", "@h/d")
	f.Add("/var/lib/herd-server/herd.db", "", "")
	f.Fuzz(func(t *testing.T, before, password, after string) {
		loc := before + password + after
		redacted := Redact(loc)
		cerr := CheckLocation(loc)
		_ = IsPostgres(loc)
		if len(password) < 6 || !strings.Contains(strings.ToLower(before), "://") {
			return
		}
		secrets := []string{}
		if u, err := url.Parse(loc); err == nil && IsPostgres(loc) {
			if p, ok := u.User.Password(); ok && p != "" {
				secrets = append(secrets, p)
			}
			for k, vs := range u.Query() {
				if strings.Contains(strings.ToLower(k), "password") {
					secrets = append(secrets, vs...)
				}
			}
		}
		for _, p := range secrets {
			if len(p) < 6 || strings.Count(loc, p) != 1 {
				continue
			}
			if strings.Contains(redacted, p) {
				t.Fatalf("Redact(%q) = %q shows the password %q", loc, redacted, p)
			}
			if cerr != nil && strings.Contains(cerr.Error(), p) {
				t.Fatalf("CheckLocation(%q) = %v shows the password %q", loc, cerr, p)
			}
		}
		// Nothing of a setting that is not PostgreSQL's but has a
		// scheme is echoed past the scheme.
		if !IsPostgres(loc) && cerr != nil && strings.Contains(cerr.Error(), password) && !strings.Contains(before, password) {
			t.Fatalf("CheckLocation(%q) = %v echoes the setting", loc, cerr)
		}
	})
}
