package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// hangup is what Reload needs besides the server's own state: one reload
// of the site at a time (the watcher's and SIGHUP's), and the TLS
// configuration Start made.
type hangup struct {
	mu  sync.Mutex
	tls atomic.Pointer[serverTLS]
}

// reloadSite loads the site's current version, one reload at a time.
func (s *Server) reloadSite(ctx context.Context) error {
	s.hup.mu.Lock()
	defer s.hup.mu.Unlock()
	return s.reload(ctx)
}

// Reloaded says what a Reload did.
type Reloaded struct {
	// Version is the default environment's site version served after
	// it; SiteError why its newest version did not load (the previous one
	// is still served).
	Version, SiteError string
	// Revoked is how many revocations were new.
	Revoked int
}

// Reload is what `herd server` does on SIGHUP, for what can change
// without a restart: it loads the site again now (as the watcher would
// on a change it may have missed), reads the server's TLS certificate and
// session ticket keys from the CA's directory again (the CA's pool of
// client roots is always current), and adds the revocations the store or
// the CRL holds that this process did not know. The server's settings
// are the caller's: `herd server` reloads the log level and names every
// other changed setting as needing a restart.
func (s *Server) Reload(ctx context.Context) (Reloaded, error) {
	var errs []error
	if err := s.reloadSite(ctx); err != nil {
		errs = append(errs, err)
	}
	var out Reloaded
	if st := s.defaultSite(); st != nil {
		out.Version, out.SiteError = st.version, st.loadErr
	}
	s.ca.ForgetServerCert()
	if _, err := s.ca.ServerCert(s.opts.Hostnames); err != nil {
		errs = append(errs, fmt.Errorf("reloading the server certificate: %w", err))
	}
	if st := s.hup.tls.Load(); st != nil {
		if err := st.rotate(); err != nil {
			errs = append(errs, fmt.Errorf("reloading TLS: %w", err))
		}
	}
	n, err := s.ca.ReloadRevocations(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	out.Revoked = n
	s.log.Info("reloaded", "version", out.Version, "site_error", out.SiteError, "new_revocations", n, "err", errors.Join(errs...))
	return out, errors.Join(errs...)
}
