package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
)

func newCACmd() *cobra.Command {
	var af nodecmd.AdminFlags
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The enrollment CA: list, sign, revoke certificates; join tokens; admin credentials; rotation",
		Long: `Manage who may talk to the server. Nodes enroll with a join token (issued at
once) or wait for an operator to sign their request. A revoked certificate is
refused on its next call, and its node's open Watch stream is closed.

Every subcommand but admin talks to a running server with an admin
certificate; "herd ca admin" makes one, on the server's machine, from the
server's state directory.`,
		Example: `  herd ca admin ops --dir /var/lib/herd-server      # once, on the server: writes ~/.config/herd/admin
  herd ca token --pattern 'web-*' --ttl 24h --single-use
  herd ca list
  herd ca sign web-07 --fingerprint sha256:…    # the fingerprint the node prints
  herd ca reject web-08
  herd ca tokens
  herd ca token revoke 3f1c0a9be2d47781
  herd ca revoke web-03
  herd ca rotate                                   # a new CA; the old one retires when nothing depends on it
  herd ca status`,
	}
	af.Register(cmd)

	var serverDir, out, storeAt string
	var offline, login, passwordStdin bool
	adminCmd := &cobra.Command{
		Use:   "admin NAME --dir SERVER_DIR",
		Short: "Issue an admin certificate, or a sign-in for the HTTP port, on the server's machine",
		Long: `Issue admin credentials (admin.crt, admin.key, ca.crt) on the server's
machine. With the server running, the request goes through it, over the
unix socket in its state directory (whoever can open it can read the CA key
anyway): the key is made here and never leaves this machine. With no server
running, --offline opens the server's store and CA directly; it is refused
without it, and whenever a server runs, so that there is never a second
writer beside a running server.

With --login, NAME gets a login for the HTTP port (the dashboard and the
JSON API) instead: a generated password is printed once, or one is read
from stdin with --password-stdin (at least 12 characters). Only its
argon2id hash is stored. Running it again for NAME replaces the password
and ends NAME's sessions.`,
		Example: `  herd ca admin ops --dir /var/lib/herd-server
  herd ca admin ops --dir /var/lib/herd-server --offline   # the server is stopped
  herd ca admin ops --login --dir /var/lib/herd-server     # prints a generated password once
  pass show herd/ops | herd ca admin ops --login --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if storeAt == "" {
				storeAt = filepath.Join(serverDir, "herd.db")
			} else if !offline {
				return errors.New("--store goes with --offline: a running server has its own")
			} else if err := store.CheckLocation(storeAt); err != nil {
				return err
			}
			if login {
				if out != "" {
					return errors.New("--out: a login writes no files; drop it")
				}
				return setLogin(cmd, serverDir, storeAt, args[0], passwordStdin, offline)
			}
			if passwordStdin {
				return errors.New("--password-stdin goes with --login")
			}
			if out == "" {
				out = af.Dir
			}
			if err := issueAdmin(cmd.Context(), serverDir, storeAt, args[0], out, offline); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin credentials for %s in %s (admin.crt, admin.key, ca.crt)\n", args[0], out)
			return nil
		},
	}
	adminCmd.Flags().StringVar(&serverDir, "dir", "/var/lib/herd-server", "the server's state directory")
	adminCmd.Flags().StringVar(&out, "out", "", "where to write the credentials (default: --admin-dir)")
	adminCmd.Flags().BoolVar(&offline, "offline", false, "no server is running: open its store and CA directly")
	adminCmd.Flags().StringVar(&storeAt, "store", "", "with --offline: the server's store when it is not DIR/herd.db (its --store, a PostgreSQL URL)")
	adminCmd.Flags().BoolVar(&login, "login", false, "make a login (name and password) for the HTTP port instead of a certificate")
	adminCmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "with --login: read the password from stdin's first line instead of generating one")

	var pattern string
	var ttl nodecmd.Duration = nodecmd.Duration(24 * time.Hour)
	var singleUse bool
	var agentServer string
	tokenCmd := &cobra.Command{
		Use:   "token",
		Short: "Create a join token: nodes enrolling with it are issued at once",
		Args:  cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			resp, err := c.CreateJoinToken(cmd.Context(), &herdv1.CreateJoinTokenRequest{
				NamePattern: pattern, TtlMs: time.Duration(ttl).Milliseconds(), SingleUse: singleUse,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "id %s, expires %s\n", resp.Id, time.UnixMilli(resp.ExpiresUnixMs).Local().Format(time.DateTime))
			return printBootstrapLine(cmd, &af, agentServer, resp.Token)
		}),
	}
	tokenCmd.Flags().StringVar(&pattern, "pattern", "", "a glob the whole enrolling name must match, '*' within one dot-separated label (default: any)")
	tokenCmd.Flags().Var(&ttl, "ttl", "how long the token is valid (at most 30 days)")
	tokenCmd.Flags().BoolVar(&singleUse, "single-use", false, "the token enrolls one node only")
	tokenCmd.Flags().StringVar(&agentServer, "agent-server", "", "the server's address as nodes reach it, for the bootstrap line (default: --server)")

	var caFile string
	fingerprintCmd := &cobra.Command{
		Use:   "fingerprint",
		Short: "Print the CA certificate's fingerprint, for agents' --ca-fingerprint",
		Long: `Print "sha256:" and the hex sha256 of the CA certificate's DER. An agent
given it with --ca-fingerprint checks the server's CA inside the first TLS
handshake, before it sends its join token.`,
		Example: "  herd ca fingerprint --ca-file /var/lib/herd-server/ca/ca.crt",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caFile == "" {
				caFile = filepath.Join(af.Dir, "ca.crt")
			}
			b, err := os.ReadFile(caFile)
			if err != nil {
				return err
			}
			cert, err := ca.ParseCertPEM(b)
			if err != nil {
				return fmt.Errorf("%s: %w", caFile, err)
			}
			sum := sha256.Sum256(cert.Raw)
			fmt.Fprintf(cmd.OutOrStdout(), "sha256:%s\n", hex.EncodeToString(sum[:]))
			return nil
		},
	}
	fingerprintCmd.Flags().StringVar(&caFile, "ca-file", "", "the CA certificate (default: ca.crt in --admin-dir)")

	var signFP string
	signCmd := &cobra.Command{
		Use:   "sign NAME --fingerprint FP",
		Short: "Issue the certificate a node requested, for the key it shows",
		Long: `Issue the certificate a pending request asks for. The waiting agent prints
its key's fingerprint; "herd ca list" shows the pending request's. Compare
them and pass the node's with --fingerprint: the server then signs only a
request for that key, never one someone else sent under the node's name.`,
		Example: "  herd ca sign web-07 --fingerprint sha256:3f1c…",
		Args:    cobra.ExactArgs(1),
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			if signFP == "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: signing without --fingerprint: whatever key requested this name is signed")
			}
			resp, err := c.SignCertificate(cmd.Context(), &herdv1.SignCertificateRequest{Name: args[0], Fingerprint: signFP})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s (serial %s)\n", resp.Certificate.Name, resp.Certificate.Serial)
			return nil
		}),
	}
	signCmd.Flags().StringVar(&signFP, "fingerprint", "", "sign only a request for the key with this fingerprint (as the agent prints it)")

	tokenRevokeCmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a join token by the id \"herd ca tokens\" shows",
		Example: "  herd ca token revoke 3f1c0a9be2d47781",
		Args:    cobra.ExactArgs(1),
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
			if _, err := c.RevokeJoinToken(cmd.Context(), &herdv1.RevokeJoinTokenRequest{Id: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked join token %s: it enrolls nothing more\n", args[0])
			return nil
		}),
	}
	tokenCmd.AddCommand(tokenRevokeCmd)

	rotateCmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new CA the one that issues; the old one retires when nothing depends on it",
		Long: `Create the next CA. From now on every certificate (enrollments, renewals,
admin credentials) comes from it. The previous CA stays trusted, and the
server's own certificate keeps coming from it, while any unexpired,
unrevoked certificate it issued remains: agents receive the bundle of both
CAs with their next renewal (at two thirds of their certificate's life) and
a certificate from the new CA. The server checks at start and hourly, and
retires the old CA once nothing depends on it: its key is deleted, its
certificate kept, and the server's certificate moves to the new CA.

This command writes the bundle of both CAs to --admin-dir's ca.crt, so that
this admin keeps reaching the server after the move.`,
		Example: `  herd ca rotate
  herd ca status      # the CAs, and how many certificates still depend on the old one`,
		Args: cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			var p peer.Peer
			resp, err := c.RotateCA(cmd.Context(), &herdv1.RotateCARequest{}, grpc.Peer(&p))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			cur, old := resp.GetCurrent(), resp.GetRetiring()
			fmt.Fprintf(out, "new CA %s (%s) issues every certificate from now on.\n", nodecmd.Clean(cur.GetSubject()), nodecmd.Clean(cur.GetFingerprint()))
			fmt.Fprintf(out, "The previous CA %s (%s) stays trusted, and issues the server's certificate, while the %d certificates it issued are valid",
				nodecmd.Clean(old.GetSubject()), nodecmd.Clean(old.GetFingerprint()), old.GetDependents())
			if old.GetLastDependentUnixMs() > 0 {
				fmt.Fprintf(out, " (the last expires %s)", time.UnixMilli(old.GetLastDependentUnixMs()).Local().Format(time.DateTime))
			}
			fmt.Fprintln(out, ".")
			fmt.Fprintln(out, "What happens next:")
			fmt.Fprintln(out, "  - agents get both CAs and a certificate from the new one when they renew (at two thirds of their certificate's life)")
			fmt.Fprintln(out, "  - the server retires the old CA on its own (checked at start and hourly) once none of its certificates is valid; herd ca status counts them")
			fmt.Fprintln(out, "  - admin credentials from the old CA keep it until they expire: issue new ones (herd ca admin NAME) and revoke the old (herd ca revoke NAME)")
			fmt.Fprintln(out, "  - new agents: pin the bundle (--ca-file with both CAs) or, during the overlap, the previous CA's fingerprint (herd ca fingerprint prints it)")
			written, err := refreshAdminBundle(af.Dir, resp.GetCaBundleDer(), p)
			if written != "" {
				fmt.Fprintf(out, "wrote both CAs to %s\n", written)
			}
			return err
		}),
	}
	var statusJSON bool
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show the server's CAs: the one that issues, the one retiring, the retired",
		Long: `Show the server's CAs and, for the current and the retiring one, how many
unexpired, unrevoked certificates each issued and when the last expires: the
retiring CA retires once that number is 0. When the server's CA bundle
differs from --admin-dir's ca.crt, it is written there.`,
		Example: "  herd ca status",
		Args:    cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			var p peer.Peer
			resp, err := c.ListAuthorities(cmd.Context(), &herdv1.ListAuthoritiesRequest{}, grpc.Peer(&p))
			if err != nil {
				return err
			}
			if statusJSON {
				// The bundle is the server's, not data about the CAs;
				// it is still written to --admin-dir below.
				if err := printProto(cmd, &herdv1.ListAuthoritiesResponse{Authorities: resp.Authorities}); err != nil {
					return err
				}
				written, err := refreshAdminBundle(af.Dir, resp.CaBundleDer, p)
				if written != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "wrote the server's CA bundle to %s\n", written)
				}
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SUBJECT\tSTATE\tNOT AFTER\tDEPENDENTS\tLAST EXPIRES\tFINGERPRINT")
			for _, au := range resp.Authorities {
				deps, last := "-", "-"
				if au.State != string(ca.AuthorityRetired) {
					deps = fmt.Sprint(au.Dependents)
				}
				if au.LastDependentUnixMs > 0 {
					last = time.UnixMilli(au.LastDependentUnixMs).Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", nodecmd.Clean(au.Subject), nodecmd.Clean(au.State),
					time.UnixMilli(au.NotAfterUnixMs).Local().Format(time.DateOnly), deps, last, nodecmd.Clean(au.Fingerprint))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			written, err := refreshAdminBundle(af.Dir, resp.CaBundleDer, p)
			if written != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote the server's CA bundle to %s\n", written)
			}
			return err
		}),
	}

	var (
		listPageSize int32
		listJSON     bool
		tokensJSON   bool
	)
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List issued, pending and revoked certificates",
		Long: `List certificates and pending requests. A pending request shows its key's
fingerprint and the address it came from: compare the fingerprint with the
one the node prints before "herd ca sign NAME --fingerprint FP". The list
comes from the server page by page.`,
		Example: `  herd ca list
  herd ca list --json | jq -r '.certificates[] | select(.state == "pending") | .name'`,
		Args: cobra.NoArgs,
		RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
			if listJSON {
				return listCertificatesJSON(cmd, c, listPageSize)
			}
			return listCertificates(cmd.Context(), cmd.OutOrStdout(), c, listPageSize)
		}),
	}
	listCmd.Flags().Int32Var(&listPageSize, "page-size", 0, "entries asked for per call (0: the server's default; the server caps it)")
	statusCmd.Flags().BoolVar(&statusJSON, "json", false, "print as JSON: {authorities: [{subject, fingerprint, state, notBeforeUnixMs, notAfterUnixMs, dependents, lastDependentUnixMs}]}")
	listCmd.Flags().BoolVar(&listJSON, "json", false, "print as JSON: {certificates: [{name, state, admin, notAfterUnixMs, serial, fingerprint, source}]}")

	cmd.AddCommand(adminCmd, tokenCmd, fingerprintCmd, signCmd, rotateCmd, statusCmd,
		listCmd,
		&cobra.Command{
			Use:   "reject NAME",
			Short: "Drop a pending request, so that the name may be requested again",
			Long: `Drop the pending request of NAME. The first request for a name holds it
until it is signed, rejected or expires: reject one whose fingerprint is not
the node's, and the node's own request is accepted on its next try.`,
			Example: "  herd ca reject web-07",
			Args:    cobra.ExactArgs(1),
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
				if _, err := c.RejectCertificate(cmd.Context(), &herdv1.RejectCertificateRequest{Name: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rejected the pending request of %s\n", args[0])
				return nil
			}),
		},
		withJSON(&tokensJSON, "print as JSON: {tokens: [{id, namePattern, expiresUnixMs, singleUse, usedUnixMs, createdUnixMs}]}", &cobra.Command{
			Use:   "tokens",
			Short: "List join tokens (never their secrets)",
			Args:  cobra.NoArgs,
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
				resp, err := c.ListJoinTokens(cmd.Context(), &herdv1.ListJoinTokensRequest{})
				if err != nil {
					return err
				}
				if tokensJSON {
					return printProto(cmd, resp)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPATTERN\tEXPIRES\tSINGLE USE\tUSED")
				for _, tk := range resp.Tokens {
					used := "-"
					if tk.UsedUnixMs > 0 {
						used = time.UnixMilli(tk.UsedUnixMs).Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", tk.Id, dash(tk.NamePattern), time.UnixMilli(tk.ExpiresUnixMs).Local().Format(time.DateTime), tk.SingleUse, used)
				}
				return tw.Flush()
			}),
		}),
		&cobra.Command{
			Use:   "revoke NAME",
			Short: "Revoke a node's certificate; it may then enroll again",
			Args:  cobra.ExactArgs(1),
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, args []string, c herdv1.AdminClient) error {
				if _, err := c.RevokeCertificate(cmd.Context(), &herdv1.RevokeCertificateRequest{Name: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %s: its open connections are closed and every call it makes is refused.\n", args[0])
				fmt.Fprintf(cmd.OutOrStdout(), "The agent on %s stops applying and reports the revocation on each run; to bring it back, give it a join token and run: herd agent --reenroll --join-token TOKEN\n", args[0])
				return nil
			}),
		},
	)
	return cmd
}

// dash shows an empty column as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// setLogin stores a login for the HTTP port through the server running
// on serverDir or, with offline and no server running, in its store
// opened directly.
func setLogin(cmd *cobra.Command, serverDir, storeAt, name string, fromStdin, offline bool) error {
	ctx := cmd.Context()
	if err := server.CheckLoginName(name); err != nil {
		return err
	}
	password := ""
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	} else {
		password = server.GeneratePassword()
	}
	hash, err := server.HashPassword(password)
	if err != nil {
		return fmt.Errorf("the password from stdin: %w", err)
	}
	if !offline {
		if err := server.SetLoginLocal(ctx, serverDir, name, hash); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w; start it, or pass --offline to open its store directly", err)
			}
			return err
		}
	} else {
		if _, closeConn, err := server.DialLocal(ctx, serverDir); err == nil {
			closeConn()
			return fmt.Errorf("a server is running on %s: drop --offline, the request goes through it", serverDir)
		}
		st, err := store.Open(storeAt, store.Options{})
		if err != nil {
			return err
		}
		if err := server.SetLogin(ctx, st, name, hash); err != nil {
			st.Close()
			return err
		}
		if err := st.Close(); err != nil {
			return err
		}
	}
	if fromStdin {
		fmt.Fprintf(cmd.OutOrStdout(), "login %s stored for the HTTP port\n", name)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "login %s stored for the HTTP port; its password, shown only now:\n%s\n", name, password)
	return nil
}

// issueAdmin writes admin credentials for name to out, issued through
// the server running on serverDir or, with offline and no server running,
// from its store and CA opened directly.
func issueAdmin(ctx context.Context, serverDir, storeAt, name, out string, offline bool) error {
	var certPEM, keyPEM, caPEM []byte
	client, closeConn, err := server.DialLocal(ctx, serverDir)
	switch {
	case err == nil:
		defer closeConn()
		if offline {
			return fmt.Errorf("a server is running on %s: drop --offline, the request goes through it", serverDir)
		}
		var csr []byte
		if keyPEM, csr, err = ca.NewKeyAndCSR(name); err != nil {
			return err
		}
		resp, err := client.IssueAdmin(ctx, &herdv1.IssueAdminRequest{Name: name, CsrDer: csr})
		if err != nil {
			return fmt.Errorf("issuing admin credentials through the server on %s: %w", serverDir, err)
		}
		certPEM = ca.CertPEM(resp.CertificateDer)
		if caPEM, err = ca.BundlePEM(resp.CaCertificateDer); err != nil {
			return fmt.Errorf("issuing admin credentials through the server on %s: %w", serverDir, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	case !offline:
		return fmt.Errorf("%w; start it, or pass --offline to open its store directly", err)
	default:
		st, err := store.Open(storeAt, store.Options{})
		if err != nil {
			return err
		}
		defer st.Close()
		authority, err := ca.Open(ctx, filepath.Join(serverDir, "ca"), st, ca.Options{})
		if err != nil {
			return err
		}
		if certPEM, keyPEM, err = authority.IssueAdmin(ctx, name); err != nil {
			return err
		}
		if caPEM, err = ca.BundlePEM(authority.BundleDER()); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"admin.key", keyPEM, 0o600},
		{"admin.crt", certPEM, 0o644},
		{"ca.crt", caPEM, 0o644},
	} {
		if err := os.WriteFile(filepath.Join(out, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("writing admin credentials: %w", err)
		}
	}
	return nil
}

// listCertificates prints every certificate and pending request, page by
// page. Names and source addresses come from nodes: they are printed
// through clean, so that none can move the cursor or forge a line.
func listCertificates(ctx context.Context, w io.Writer, c herdv1.AdminClient, pageSize int32) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADMIN\tNOT AFTER\tSERIAL\tFINGERPRINT\tSOURCE")
	token := ""
	for {
		resp, err := c.ListCertificates(ctx, &herdv1.ListCertificatesRequest{PageSize: pageSize, PageToken: token})
		if err != nil {
			return err
		}
		for _, ce := range resp.Certificates {
			notAfter := "-"
			if ce.NotAfterUnixMs > 0 {
				notAfter = time.UnixMilli(ce.NotAfterUnixMs).Local().Format(time.DateOnly)
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", nodecmd.Clean(ce.Name), nodecmd.Clean(ce.State), ce.Admin, notAfter,
				dash(nodecmd.Clean(ce.Serial)), dash(nodecmd.Clean(ce.Fingerprint)), dash(nodecmd.Clean(ce.Source)))
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	return tw.Flush()
}

// refreshAdminBundle writes the server's CA bundle (DER, as the Admin
// service sends it) to dir's ca.crt when it differs from the file, and
// says where it wrote. The bundle came over a connection verified with
// the file, and it must vouch for the server certificate that connection
// presented: it may add the CA a rotation made, never swap the server.
func refreshAdminBundle(dir string, der []byte, p peer.Peer) (string, error) {
	if len(der) == 0 {
		return "", nil
	}
	bundle, err := ca.BundlePEM(der)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ca.crt")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, bundle) {
		return "", nil
	}
	certs, _ := x509.ParseCertificates(der)
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return "", errors.New("the server sent a new CA bundle, and no server certificate was seen to check it with")
	}
	inter := x509.NewCertPool()
	for _, c := range ti.State.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := ti.State.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return "", fmt.Errorf("the server's CA bundle does not vouch for the server that sent it; %s left alone: %w", path, err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, bundle, 0o644); err != nil {
		return "", fmt.Errorf("writing the CA bundle: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing the CA bundle: %w", err)
	}
	return path, nil
}

// withJSON adds --json (into v, with usage) to c and returns c.
func withJSON(v *bool, usage string, c *cobra.Command) *cobra.Command {
	c.Flags().BoolVar(v, "json", false, usage)
	return c
}

// listCertificatesJSON prints every certificate and request, page by
// page, as one JSON document.
func listCertificatesJSON(cmd *cobra.Command, c herdv1.AdminClient, pageSize int32) error {
	all := &herdv1.ListCertificatesResponse{}
	for token := ""; ; {
		resp, err := c.ListCertificates(cmd.Context(), &herdv1.ListCertificatesRequest{PageSize: pageSize, PageToken: token})
		if err != nil {
			return err
		}
		all.Certificates = append(all.Certificates, resp.Certificates...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	return printProto(cmd, all)
}
