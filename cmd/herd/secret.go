package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/server"
)

// defaultServerDir is herd server's default --dir.
const defaultServerDir = "/var/lib/herd-server"

func newSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Encrypt site secrets to the server's key, show and rotate them",
		Long: `Work with the site's secrets (docs/site.md, "Secrets").

A secret sits in the site encrypted (age) to the server's secrets key, which
the server makes in its state directory (DIR/secrets.key) on first start. The
server opens secrets only in memory while it compiles, and a catalog carries
each value that depends on one sealed to the owning node's own key.

recipient and encrypt need only the server's public recipient; show and rotate
read the secrets key itself, so they run on the server host (--dir).`,
	}
	cmd.AddCommand(newSecretRecipientCmd(), newSecretEncryptCmd(), newSecretShowCmd(), newSecretRotateCmd())
	return cmd
}

func newSecretRecipientCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "recipient [--dir DIR]",
		Short: "Print the age recipient site secrets are encrypted to",
		Long: `Print the server's age recipient (age1…), read from its state directory.

It is public: publish it to the site's authors, who pass it to herd secret
encrypt --recipient (or to age itself).`,
		Example: `  herd secret recipient --dir /var/lib/herd-server`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, _, err := server.LoadSecretKeys(dir)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), keys.Recipient())
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultServerDir, "the server's state directory")
	return cmd
}

func newSecretEncryptCmd() *cobra.Command {
	var dir, recipient, name, site string
	var raw bool
	cmd := &cobra.Command{
		Use:   "encrypt [--recipient AGE1… | --dir DIR] [--name KEY --site SITE]",
		Short: "Encrypt a value read on standard input for the site",
		Long: `Encrypt the value read on standard input to the server's recipient.

Without --name it prints one line, age:…, to paste wherever a value goes: a
data file, a role's or rule's params, an attribute. With --name KEY it writes
SITE/secrets/KEY.age (armored), which templates read as {{ secret "KEY" }}.

One trailing newline is dropped (echo adds one); --raw keeps the input as is.
The recipient comes from --recipient, or from the server's state directory.`,
		Example: `  printf %s 'hunter2' | herd secret encrypt --recipient age1…
  herd secret encrypt --dir /var/lib/herd-server --name db/password --site . < pw.txt
  herd secret encrypt --raw --name tls/key --site . --recipient age1… < server.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if recipient == "" {
				keys, _, err := server.LoadSecretKeys(dir)
				if err != nil {
					return fmt.Errorf("%w (or give --recipient)", err)
				}
				recipient = keys.Recipient()
			}
			if (name == "") != (site == "") {
				return nodecmd.UsageError(cmd, "--name and --site go together")
			}
			plain, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			if err != nil {
				return fmt.Errorf("reading the value: %w", err)
			}
			if !raw {
				plain = []byte(strings.TrimSuffix(strings.TrimSuffix(string(plain), "\n"), "\r"))
			}
			if name == "" {
				v, err := catalogs.EncryptSecret(recipient, plain)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), v)
				return nil
			}
			p, err := secretFilePath(site, name)
			if err != nil {
				return nodecmd.UsageError(cmd, err.Error())
			}
			b, err := catalogs.EncryptSecretFile(recipient, plain)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := writeFileKeepMode(p, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: use it as {{ secret %q }}\n", p, name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", defaultServerDir, "the server's state directory, to read the recipient from")
	f.StringVar(&recipient, "recipient", "", "the server's age recipient (herd secret recipient)")
	f.StringVar(&name, "name", "", "write SITE/secrets/NAME.age instead of printing the value")
	f.StringVar(&site, "site", "", "the site directory (with --name)")
	f.BoolVar(&raw, "raw", false, "keep the input byte for byte (no trailing newline dropped)")
	return cmd
}

// secretFilePath is SITE/secrets/NAME.age, for a NAME that stays inside.
func secretFilePath(site, name string) (string, error) {
	if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "..") {
		return "", fmt.Errorf("--name %q: want a clean relative name like db/password", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || strings.HasPrefix(part, ".") || strings.Trim(part, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
			return "", fmt.Errorf("--name %q: want letters, digits, '-', '_', '.' and '/'", name)
		}
	}
	return filepath.Join(site, "secrets", filepath.FromSlash(name)+".age"), nil
}

func newSecretShowCmd() *cobra.Command {
	var dir, keyFile, site string
	cmd := &cobra.Command{
		Use:   "show [--dir DIR | --secrets-key FILE] [--site SITE] KEY|age:…",
		Short: "Decrypt one secret (only with the server's secrets key)",
		Long: `Print the plain value of one secret: a value written age:… (given as the
argument), or the file SITE/secrets/KEY.age. It needs the server's secrets
key (--dir, or a copy with --secrets-key): nothing else in Herd ever shows a
secret's value.`,
		Example: `  herd secret show --dir /var/lib/herd-server --site /srv/site db/password
  herd secret show --dir /var/lib/herd-server "$(grep -o 'age:[^"]*' data/common.toml)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := secretKeysFrom(dir, keyFile)
			if err != nil {
				return err
			}
			arg := args[0]
			var v []byte
			if strings.HasPrefix(arg, catalogs.SecretPrefix) {
				v = []byte(arg)
			} else {
				if site == "" {
					return nodecmd.UsageError(cmd, "a KEY needs --site (or give the age:… value)")
				}
				p, err := secretFilePath(site, arg)
				if err != nil {
					return nodecmd.UsageError(cmd, err.Error())
				}
				if v, err = os.ReadFile(p); err != nil {
					return fmt.Errorf("secret %s: %w", arg, err)
				}
			}
			plain, err := catalogs.OpenSecretValue(keys, v)
			if err != nil {
				return fmt.Errorf("secret %s: %w", shortArg(arg), err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), plain)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", defaultServerDir, "the server's state directory")
	f.StringVar(&keyFile, "secrets-key", "", "a copy of the server's secrets key file (instead of --dir)")
	f.StringVar(&site, "site", "", "the site directory, for a KEY")
	return cmd
}

func shortArg(s string) string {
	if len(s) > 24 {
		return s[:21] + "..."
	}
	return s
}

func newSecretRotateCmd() *cobra.Command {
	var dir, site string
	var retire bool
	cmd := &cobra.Command{
		Use:   "rotate --site SITE [--dir DIR] [--retire]",
		Short: "Move the site's secrets to a new server key",
		Long: `Rotate the server's secrets key, in two steps.

herd secret rotate --site SITE makes a new identity, first in DIR/secrets.key
(the old ones stay, to decrypt what the site still holds), and re-encrypts
every secret of the site to it: the age:… values of every .toml file, in
place, and every secrets/*.age file. Commit and push the site: the server
reads its key again when the new version loads, and reseals every node's
catalog (every sensitive value's digest changes once).

herd secret rotate --retire, once the server serves the re-encrypted site,
drops the old identities. It refuses while any secret of --site still needs
one. Run both on the server host, as the user that owns DIR.`,
		Example: `  herd secret rotate --dir /var/lib/herd-server --site /srv/site-checkout
  git -C /srv/site-checkout commit -am "secrets: rotate the server key" && git push
  herd secret rotate --retire --dir /var/lib/herd-server --site /srv/site-checkout`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if site == "" {
				return nodecmd.UsageError(cmd, "--site is required")
			}
			out := cmd.OutOrStdout()
			if retire {
				keys, _, err := server.LoadSecretKeys(dir)
				if err != nil {
					return err
				}
				n := 0
				err = walkSiteSecrets(site, func(p string, text []byte, isFile bool) error {
					c, err := catalogs.CheckSecrets(keys.Current(), text, isFile)
					if err != nil {
						return fmt.Errorf("%s: %w: re-encrypt it first (herd secret rotate)", p, err)
					}
					n += c
					return nil
				})
				if err != nil {
					return err
				}
				if _, err := server.RotateSecretsKey(dir, true); err != nil {
					return err
				}
				fmt.Fprintf(out, "all %d secrets of %s open with the current key; the old identities are gone from %s\n", n, site, server.SecretsKeyPath(dir))
				return nil
			}
			// Check first that every secret opens, so that a rotation
			// never stops half way on one the server cannot read.
			keys, _, err := server.LoadSecretKeys(dir)
			if err != nil {
				return err
			}
			if err := walkSiteSecrets(site, func(p string, text []byte, isFile bool) error {
				_, err := catalogs.CheckSecrets(keys, text, isFile)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				return nil
			}); err != nil {
				return err
			}
			keys, err = server.RotateSecretsKey(dir, false)
			if err != nil {
				return err
			}
			secrets, files := 0, 0
			err = walkSiteSecrets(site, func(p string, text []byte, isFile bool) error {
				out, n, err := catalogs.RotateSecrets(keys, keys.Recipient(), text, isFile)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				if n == 0 {
					return nil
				}
				secrets, files = secrets+n, files+1
				return writeFileKeepMode(p, out, 0o644)
			})
			if err != nil {
				return fmt.Errorf("%w (the new key is in place and the old one kept: run herd secret rotate again)", err)
			}
			fmt.Fprintf(out, "re-encrypted %d secrets in %d files to %s\ncommit the site; once the server serves it: herd secret rotate --retire --dir %s --site %s\n",
				secrets, files, keys.Recipient(), dir, site)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", defaultServerDir, "the server's state directory")
	f.StringVar(&site, "site", "", "a checkout of the site to re-encrypt")
	f.BoolVar(&retire, "retire", false, "drop the old identities (after the re-encrypted site is served)")
	return cmd
}

// walkSiteSecrets calls fn for every file of the site that may hold a
// secret: the .toml files (outside files/) and secrets/**/*.age. Links
// and dot directories are skipped, as the server's load skips or refuses
// them.
func walkSiteSecrets(site string, fn func(p string, text []byte, isSecretFile bool) error) error {
	return filepath.WalkDir(site, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(site, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "files") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		isFile := strings.HasPrefix(rel, "secrets/") && strings.HasSuffix(rel, ".age")
		if !isFile && !strings.HasSuffix(rel, ".toml") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !isFile && !strings.Contains(string(b), catalogs.SecretPrefix) {
			return nil
		}
		return fn(p, b, isFile)
	})
}

// secretKeysFrom reads the secrets key from a file, or from the server's
// state directory.
func secretKeysFrom(dir, file string) (*catalogs.SecretKeys, error) {
	if file != "" {
		return readSecretsKeyFile(file)
	}
	keys, _, err := server.LoadSecretKeys(dir)
	return keys, err
}

// readSecretsKeyFile reads a copy of the server's secrets key, refusing
// one readable by others.
func readSecretsKeyFile(p string) (*catalogs.SecretKeys, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("reading the secrets key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("reading the secrets key: %s is readable by others (mode %04o): chmod 600 it", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading the secrets key: %w", err)
	}
	k, err := catalogs.ParseSecretKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return k, nil
}

// writeFileKeepMode replaces p whole (temporary file, rename), keeping
// its mode when it exists.
func writeFileKeepMode(p string, b []byte, mode os.FileMode) error {
	if fi, err := os.Stat(p); err == nil {
		mode = fi.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".herd-secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
