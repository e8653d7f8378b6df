package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/server/ca"
)

func TestCerts(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)

		c1 := ca.Cert{Name: "web-01", Serial: "0a", DER: []byte{1, 2}, NotAfter: at(1000), Issued: at(1)}
		adm := ca.Cert{Name: "admin", Serial: "0b", DER: []byte{3}, Admin: true, NotAfter: at(1000), Issued: at(2)}
		must(t, s.PutCert(ctx, c1))
		must(t, s.PutCert(ctx, adm))
		if err := s.PutCert(ctx, ca.Cert{Name: "web-01", Serial: "0c"}); !errors.Is(err, ca.ErrExists) {
			t.Errorf("second PutCert of web-01 = %v, want ca.ErrExists", err)
		}
		if got, ok, err := s.Cert(ctx, "web-01"); err != nil || !ok {
			t.Errorf("Cert(web-01) = %v, %v", ok, err)
		} else if d := cmp.Diff(c1, got); d != "" {
			t.Errorf("Cert(web-01) (-want +got):\n%s", d)
		}
		if _, ok, err := s.Cert(ctx, "nobody"); err != nil || ok {
			t.Errorf("Cert(nobody) = %v, %v", ok, err)
		}

		if err := s.Revoke(ctx, "nobody", at(5)); !errors.Is(err, ca.ErrNotFound) {
			t.Errorf("Revoke(nobody) = %v, want ca.ErrNotFound", err)
		}
		must(t, s.Revoke(ctx, "web-01", at(5)))
		if err := s.Revoke(ctx, "web-01", at(6)); !errors.Is(err, ca.ErrNotFound) {
			t.Errorf("second Revoke(web-01) = %v, want ca.ErrNotFound", err)
		}
		// Revoked: the name may be issued again; the old serial stays refused.
		c2 := ca.Cert{Name: "web-01", Serial: "0d", DER: []byte{4}, NotAfter: at(2000), Issued: at(7)}
		must(t, s.PutCert(ctx, c2))
		if got, _, _ := s.Cert(ctx, "web-01"); got.Serial != "0d" {
			t.Errorf("Cert(web-01) after reissue = serial %s, want 0d", got.Serial)
		}
		revoked, err := s.Revoked(ctx)
		if err != nil || !cmp.Equal(revoked, []string{"0a"}) {
			t.Errorf("Revoked = %v, %v; want [0a]", revoked, err)
		}
		certs, err := s.Certs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c1.RevokedAt = at(5)
		if d := cmp.Diff([]ca.Cert{adm, c2, c1}, certs); d != "" {
			t.Errorf("Certs (-want +got):\n%s", d)
		}
		if got, ok, err := s.CertBySerial(ctx, "0a"); err != nil || !ok {
			t.Errorf("CertBySerial(0a) = %v, %v", ok, err)
		} else if d := cmp.Diff(c1, got); d != "" {
			t.Errorf("CertBySerial(0a) (-want +got):\n%s", d)
		}
		if _, ok, err := s.CertBySerial(ctx, "ff"); err != nil || ok {
			t.Errorf("CertBySerial(ff) = %v, %v; want not found", ok, err)
		}
	})
}

func TestPending(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		a := ca.Pending{Name: "web-02", CSR: []byte{1}, Requested: at(1), Source: "192.0.2.7:4711"}
		b := ca.Pending{Name: "db-01", CSR: []byte{2}, Requested: at(2)}
		must(t, s.PutPending(ctx, a))
		must(t, s.PutPending(ctx, b))
		a.CSR, a.Requested = []byte{9}, at(3) // asked again with another key
		must(t, s.PutPending(ctx, a))
		if got, ok, err := s.Pending(ctx, "web-02"); err != nil || !ok {
			t.Errorf("Pending(web-02) = %v, %v", ok, err)
		} else if d := cmp.Diff(a, got); d != "" {
			t.Errorf("Pending(web-02) (-want +got):\n%s", d)
		}
		all, err := s.Pendings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]ca.Pending{b, a}, all); d != "" {
			t.Errorf("Pendings (-want +got):\n%s", d)
		}
		if n, err := s.CountPending(ctx); err != nil || n != 2 {
			t.Errorf("CountPending = %d, %v; want 2", n, err)
		}
		if n, err := s.PrunePending(ctx, at(3)); err != nil || n != 1 {
			t.Errorf("PrunePending(before 3) = %d, %v; want 1 (db-01)", n, err)
		}
		if _, ok, _ := s.Pending(ctx, "db-01"); ok {
			t.Errorf("db-01 still pending after PrunePending")
		}
		must(t, s.DeletePending(ctx, "web-02"))
		must(t, s.DeletePending(ctx, "web-02")) // nothing there: no error
		if _, ok, err := s.Pending(ctx, "web-02"); err != nil || ok {
			t.Errorf("Pending after delete = %v, %v", ok, err)
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		multi := ca.Token{Hash: "aa", NamePattern: "web-*", Expires: at(100), Created: at(1)}
		single := ca.Token{Hash: "bb", SingleUse: true, Created: at(2)}
		must(t, s.PutToken(ctx, multi))
		must(t, s.PutToken(ctx, single))

		for i := range 3 {
			got, ok, err := s.UseToken(ctx, "aa", at(10+i), yes)
			if err != nil || !ok {
				t.Fatalf("UseToken(multi) #%d = %v, %v", i, ok, err)
			}
			if d := cmp.Diff(multi, got); d != "" {
				t.Errorf("UseToken(multi) (-want +got):\n%s", d)
			}
		}
		// A refused use leaves a single-use token unspent.
		if _, ok, err := s.UseToken(ctx, "bb", at(19), func(ca.Token) bool { return false }); err != nil || ok {
			t.Errorf("UseToken(single, refused) = %v, %v; want not ok", ok, err)
		}
		got, ok, err := s.UseToken(ctx, "bb", at(20), yes)
		if err != nil || !ok || !got.UsedAt.Equal(at(20)) || !got.SingleUse {
			t.Errorf("UseToken(single) = %+v, %v, %v", got, ok, err)
		}
		if _, ok, err := s.UseToken(ctx, "bb", at(21), yes); err != nil || ok {
			t.Errorf("second UseToken(single) = %v, %v; want not ok", ok, err)
		}
		if _, ok, err := s.UseToken(ctx, "zz", at(21), yes); err != nil || ok {
			t.Errorf("UseToken(unknown) = %v, %v; want not ok", ok, err)
		}
		single.UsedAt = at(20)
		if all, err := s.Tokens(ctx); err != nil {
			t.Fatal(err)
		} else if d := cmp.Diff([]ca.Token{single, multi}, all); d != "" {
			t.Errorf("Tokens (-want +got):\n%s", d)
		}
		must(t, s.DeleteToken(ctx, "aa"))
		if _, ok, err := s.UseToken(ctx, "aa", at(30), yes); err != nil || ok {
			t.Errorf("UseToken after DeleteToken = %v, %v; want not ok", ok, err)
		}
	})
}

// yes accepts every token.
func yes(ca.Token) bool { return true }

// TestUseTokenOnce: 20 concurrent callers, one single-use token, exactly
// one gets it.
func TestUseTokenOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		must(t, s.PutToken(ctx, ca.Token{Hash: "cc", SingleUse: true, Created: at(1)}))
		var won atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				_, ok, err := s.UseToken(ctx, "cc", at(10+i), yes)
				if err != nil {
					t.Error(err)
				}
				if ok {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		if n := won.Load(); n != 1 {
			t.Errorf("%d of 20 concurrent callers used a single-use token, want exactly 1", n)
		}
	})
}

// TestSupersede: a renewed certificate supersedes the current one, which
// stays unrevoked (valid until it expires); a revocation covers both.
func TestSupersede(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		old := ca.Cert{Name: "web-01", Serial: "01", DER: []byte{1}, NotAfter: at(100), Issued: at(1)}
		must(t, s.PutCert(ctx, old))
		renewed := ca.Cert{Name: "web-01", Serial: "02", DER: []byte{2}, NotAfter: at(200), Issued: at(50), Supersedes: "01"}
		must(t, s.PutCert(ctx, renewed))
		if got, _, err := s.Cert(ctx, "web-01"); err != nil || got.Serial != "02" || got.Supersedes != "01" {
			t.Errorf("Cert(web-01) = %+v, %v; want the renewed one", got, err)
		}
		if got, _, _ := s.CertBySerial(ctx, "01"); got.SupersededBy != "02" || !got.RevokedAt.IsZero() {
			t.Errorf("the old certificate = %+v; want superseded by 02 and not revoked", got)
		}
		// Only the current certificate may be superseded, once.
		for _, c := range []ca.Cert{
			{Name: "web-01", Serial: "03", DER: []byte{3}, Supersedes: "01"},
			{Name: "web-01", Serial: "04", DER: []byte{4}, Supersedes: "ff"},
			{Name: "db-01", Serial: "05", DER: []byte{5}, Supersedes: "02"},
		} {
			if err := s.PutCert(ctx, c); !errors.Is(err, ca.ErrNotFound) {
				t.Errorf("PutCert(%s superseding %s) = %v, want ErrNotFound", c.Serial, c.Supersedes, err)
			}
		}
		if err := s.PutCert(ctx, ca.Cert{Name: "web-01", Serial: "06", DER: []byte{6}}); !errors.Is(err, ca.ErrExists) {
			t.Errorf("PutCert beside a current certificate = %v, want ErrExists", err)
		}
		must(t, s.Revoke(ctx, "web-01", at(60)))
		if revoked, _ := s.Revoked(ctx); !cmp.Equal(revoked, []string{"01", "02"}) {
			t.Errorf("Revoked = %v; want both", revoked)
		}
	})
}
