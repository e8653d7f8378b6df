package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/facts"
)

func newCompileCmd() *cobra.Command {
	var (
		site, node, factsFile string
		secretsKey            string
		canonical, digestOnly bool
	)
	cmd := &cobra.Command{
		Use:   "compile --site DIR --node NAME [--facts FILE|-]",
		Short: "Print the catalog a node gets from a site",
		Long: `Compile a node's catalog from a site and print it as JSON.

The catalog is exactly what the server would hand that node: every resource
with its attributes, edges and source line, and the files it ships by digest.
Compile is deterministic: the same site version, node and facts always give
the same bytes, and so the same digest.

Facts come from --facts (a JSON or TOML file, or - for JSON on stdin), or are
collected from this host when --facts is not given.

A value that depends on a secret (or is sensitive by nature) never prints: it
is {"sealed":{"box":"","digest":""}}, a placeholder. With --secrets-key (a
copy of the server's DIR/secrets.key) the secrets are opened and checked, and
each sensitive value is sealed to a throwaway key: its digest is the one the
server's catalogs carry.

Exit status: 0 compiled, 1 the site or node has errors (all are listed, each
with file:line:column), 64 bad usage.`,
		Example: `  herd compile --site examples/site --node web-01 --facts examples/site/tests/facts/debian12.json
  herd facts --json | herd compile --site . --node "$(hostname)" --facts -
  herd compile --site . --node web-01 --facts f.json --digest`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, f, err := siteAndFacts(cmd, site, node, factsFile)
			if err != nil {
				return err
			}
			opts, err := localCompileOptions(secretsKey)
			if err != nil {
				return err
			}
			cat, err := s.CompileWith(node, f, opts)
			if err != nil {
				return nodecmd.SiteError(site, err)
			}
			b, err := cat.Encode()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case digestOnly:
				fmt.Fprintln(out, catalogs.Digest(b))
			case canonical:
				_, err = out.Write(b)
			default:
				var ind bytes.Buffer
				if err := json.Indent(&ind, b, "", "  "); err != nil {
					return err
				}
				ind.WriteByte('\n')
				_, err = ind.WriteTo(out)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&site, "site", "", "the site directory")
	cmd.Flags().StringVar(&node, "node", "", "the node to compile for")
	cmd.Flags().StringVar(&factsFile, "facts", "", "facts as a JSON or TOML file, or - for JSON on stdin (default: this host's facts)")
	cmd.Flags().StringVar(&secretsKey, "secrets-key", "", "the server's secrets key file, to open the site's secrets (default: placeholders)")
	cmd.Flags().BoolVar(&canonical, "canonical", false, "print the exact canonical bytes (compact) that the digest and signature cover")
	cmd.Flags().BoolVar(&digestOnly, "digest", false, "print only the catalog's digest")
	return cmd
}

// siteAndFacts loads the site and the facts a node is compiled with, for
// the commands that take --site, --node and --facts.
func siteAndFacts(cmd *cobra.Command, site, node, factsFile string) (*catalogs.Site, facts.Facts, error) {
	if site == "" || node == "" {
		return nil, nil, nodecmd.UsageError(cmd, "--site and --node are required")
	}
	ctx := cmd.Context()
	s, err := catalogs.Load(ctx, site, catalogs.LoadOptions{})
	if err != nil {
		return nil, nil, nodecmd.SiteError(site, err)
	}
	f, err := readFacts(ctx, factsFile, cmd.InOrStdin())
	if err != nil {
		return nil, nil, err
	}
	return s, f, nil
}

// readFacts reads facts from a file, from stdin ("-"), or from this host
// when name is empty.
func readFacts(ctx context.Context, name string, stdin io.Reader) (facts.Facts, error) {
	var (
		b   []byte
		err error
	)
	switch name {
	case "":
		f, err := facts.Collect(ctx, facts.Options{AgentVersion: nodecmd.Version()})
		if f == nil && err != nil {
			return nil, fmt.Errorf("collecting this host's facts: %w", err)
		}
		return f, nil
	case "-":
		b, err = io.ReadAll(stdin)
		name = "standard input"
	default:
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading facts: %w", err)
	}
	if strings.HasSuffix(name, ".toml") {
		var m map[string]any
		if err := toml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("reading facts from %s: %w", name, err)
		}
		return facts.Facts(m), nil
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("reading facts from %s: %w", name, err)
	}
	return f, nil
}

// localCompileOptions are the compile options of a command run away from
// the server: placeholders for every sensitive value, or, with the
// server's secrets key, the secrets opened and sealed to a throwaway node
// key (the digests are the server's; no box opens anywhere).
func localCompileOptions(secretsKey string) (catalogs.CompileOptions, error) {
	if secretsKey == "" {
		return catalogs.CompileOptions{Placeholders: true}, nil
	}
	keys, err := readSecretsKeyFile(secretsKey)
	if err != nil {
		return catalogs.CompileOptions{}, err
	}
	node, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return catalogs.CompileOptions{}, err
	}
	return catalogs.CompileOptions{Secrets: keys, NodeKey: node.PublicKey()}, nil
}
