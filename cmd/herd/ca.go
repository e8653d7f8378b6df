package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
		Short: "The enrollment CA: list, sign, revoke certificates; join tokens; admin credentials",
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
  herd ca revoke web-03`,
	}
	af.Register(cmd)

	var serverDir, out string
	var offline bool
	adminCmd := &cobra.Command{
		Use:   "admin NAME --dir SERVER_DIR",
		Short: "Issue an admin certificate from the server's CA (on the server's machine)",
		Long: `Issue admin credentials (admin.crt, admin.key, ca.crt) on the server's
machine. With the server running, the request goes through it, over the
unix socket in its state directory (whoever can open it can read the CA key
anyway): the key is made here and never leaves this machine. With no server
running, --offline opens the server's store and CA directly; it is refused
without it, and whenever a server runs, so that there is never a second
writer beside a running server.`,
		Example: `  herd ca admin ops --dir /var/lib/herd-server
  herd ca admin ops --dir /var/lib/herd-server --offline   # the server is stopped`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = af.Dir
			}
			if err := issueAdmin(cmd.Context(), serverDir, args[0], out, offline); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "admin credentials for %s in %s (admin.crt, admin.key, ca.crt)\n", args[0], out)
			return nil
		},
	}
	adminCmd.Flags().StringVar(&serverDir, "dir", "/var/lib/herd-server", "the server's state directory")
	adminCmd.Flags().StringVar(&out, "out", "", "where to write the credentials (default: --admin-dir)")
	adminCmd.Flags().BoolVar(&offline, "offline", false, "no server is running: open its store and CA directly")

	var pattern string
	var ttl nodecmd.Duration = nodecmd.Duration(24 * time.Hour)
	var singleUse bool
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
			return nil
		}),
	}
	tokenCmd.Flags().StringVar(&pattern, "pattern", "", "a glob the whole enrolling name must match, '*' within one dot-separated label (default: any)")
	tokenCmd.Flags().Var(&ttl, "ttl", "how long the token is valid (at most 30 days)")
	tokenCmd.Flags().BoolVar(&singleUse, "single-use", false, "the token enrolls one node only")

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

	cmd.AddCommand(adminCmd, tokenCmd, fingerprintCmd, signCmd,
		&cobra.Command{
			Use:   "list",
			Short: "List issued, pending and revoked certificates",
			Long: `List certificates and pending requests. A pending request shows its key's
fingerprint and the address it came from: compare the fingerprint with the
one the node prints before "herd ca sign NAME --fingerprint FP".`,
			Args: cobra.NoArgs,
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
				resp, err := c.ListCertificates(cmd.Context(), &herdv1.ListCertificatesRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tADMIN\tNOT AFTER\tSERIAL\tFINGERPRINT\tSOURCE")
				for _, ce := range resp.Certificates {
					notAfter := "-"
					if ce.NotAfterUnixMs > 0 {
						notAfter = time.UnixMilli(ce.NotAfterUnixMs).Local().Format(time.DateOnly)
					}
					fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", ce.Name, ce.State, ce.Admin, notAfter, dash(ce.Serial), dash(ce.Fingerprint), dash(ce.Source))
				}
				return tw.Flush()
			}),
		},
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
		&cobra.Command{
			Use:   "tokens",
			Short: "List join tokens (never their secrets)",
			Args:  cobra.NoArgs,
			RunE: nodecmd.WithAdmin(&af, func(cmd *cobra.Command, _ []string, c herdv1.AdminClient) error {
				resp, err := c.ListJoinTokens(cmd.Context(), &herdv1.ListJoinTokensRequest{})
				if err != nil {
					return err
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
		},
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

// issueAdmin writes admin credentials for name to out, issued through
// the server running on serverDir or, with offline and no server running,
// from its store and CA opened directly.
func issueAdmin(ctx context.Context, serverDir, name, out string, offline bool) error {
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
		certPEM, caPEM = ca.CertPEM(resp.CertificateDer), ca.CertPEM(resp.CaCertificateDer)
	case !errors.Is(err, os.ErrNotExist):
		return err
	case !offline:
		return fmt.Errorf("%w; start it, or pass --offline to open its store directly", err)
	default:
		st, err := store.Open(filepath.Join(serverDir, "herd.db"), store.Options{})
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
		caPEM = ca.CertPEM(authority.CACertDER())
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
