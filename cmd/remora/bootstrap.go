package main

import (
	"bytes"
	"crypto/rand"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/core/dnsbox"
	"github.com/remora-p2p/remora/core/relaylist"
)

// bootstrapCmd is `remora bootstrap`: the maintainers' and CI's tools for
// the signed list of volunteer relays (core/relaylist, docs/discovery.md).
func (a *app) bootstrapCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bootstrap", Short: "Build, sign, verify and show the signed list of volunteer relays"}
	cmd.AddCommand(bootstrapKeygenCmd(), bootstrapDelegateCmd(), bootstrapBuildCmd(), bootstrapSignCmd(),
		bootstrapVerifyCmd(), bootstrapShowCmd(), bootstrapExportCmd(), a.bootstrapDialsCmd(), bootstrapPublishDNSCmd())
	return cmd
}

// bootstrapDialsCmd writes the running daemon's reservation outcomes on
// volunteer relays as a dial-outcome file for `bootstrap build --health`.
func (a *app) bootstrapDialsCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "dials",
		Short: "Write this daemon's reservation outcomes on volunteer relays (CSV peer,successes,failures) for build --health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ds, err := a.client().RelayDials(cmd.Context())
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			buf.WriteString("peer,successes,failures\n")
			for _, d := range ds {
				fmt.Fprintf(&buf, "%s,%d,%d\n", d.Peer, d.Successes, d.Failures)
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d relays\n", out, len(ds))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write to this file (default: standard output)")
	return cmd
}

// bootstrapPublishDNSCmd puts a bundle in a name's TXT records, in chunks,
// by an RFC 2136 update signed with TSIG; nodes with [relay_list] dns read it.
func bootstrapPublishDNSCmd() *cobra.Command {
	var name, server, zone, tsigName, tsigAlg, secretFile string
	cmd := &cobra.Command{
		Use:   "publish-dns BUNDLE",
		Short: "Publish a signed bundle in the TXT records of a name (RFC 2136 + TSIG), for [relay_list] dns",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			l, err := relaylist.ParseCSV(b.List)
			if err != nil {
				return err
			}
			secret, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("TSIG secret: %w", err)
			}
			box, err := dnsbox.New(dnsbox.Options{Name: name, Server: server, UpdateServer: server, Zone: zone,
				TSIGName: tsigName, TSIGAlgorithm: tsigAlg, TSIGSecret: strings.TrimSpace(string(secret))})
			if err != nil {
				return err
			}
			chunks, err := relaylist.Chunks(data, l.Seq, box.MaxValue())
			if err != nil {
				return err
			}
			if err := box.Put(cmd.Context(), chunks); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: seq %d in %d TXT records\n", name, l.Seq, len(chunks))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the DNS name (as in [relay_list] dns)")
	cmd.Flags().StringVar(&server, "server", "", "the zone's primary (host:port)")
	cmd.Flags().StringVar(&zone, "zone", "", "the zone (default: found by SOA)")
	cmd.Flags().StringVar(&tsigName, "tsig-name", "", "TSIG key name")
	cmd.Flags().StringVar(&tsigAlg, "tsig-algorithm", "hmac-sha256", "TSIG algorithm")
	cmd.Flags().StringVar(&secretFile, "tsig-secret-file", "", "file holding the TSIG secret (base64)")
	for _, f := range []string{"name", "server", "tsig-name", "tsig-secret-file"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}

func bootstrapKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen PREFIX",
		Short: "Make a minisign key pair PREFIX.key (0600) and PREFIX.pub (a root or a signing key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, priv, err := minisign.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			pk, _ := priv.MarshalText()
			if err := writeNew(args[0]+".key", pk, 0o600); err != nil {
				return err
			}
			pp, _ := pub.MarshalText()
			if err := writeNew(args[0]+".pub", pp, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s.key and %s.pub written; public key %s\n", args[0], args[0], relaylist.KeyString(pub))
			return nil
		},
	}
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("%w (remove it first to replace it)", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readPriv reads a minisign private key: unencrypted (keygen), or
// encrypted with the password in $REMORA_KEY_PASSWORD (the minisign CLI's).
func readPriv(path string) (minisign.PrivateKey, error) {
	var k minisign.PrivateKey
	b, err := os.ReadFile(path)
	if err != nil {
		return k, err
	}
	if minisign.IsEncrypted(b) {
		if k, err = minisign.DecryptKey(os.Getenv("REMORA_KEY_PASSWORD"), b); err != nil {
			return k, fmt.Errorf("read key %s: %w (set REMORA_KEY_PASSWORD to its password)", path, err)
		}
		return k, nil
	}
	if err := k.UnmarshalText(b); err != nil {
		return k, fmt.Errorf("read key %s: %w", path, err)
	}
	return k, nil
}

func readPub(path string) (minisign.PublicKey, error) {
	if k, err := minisign.PublicKeyFromFile(path); err == nil {
		return k, nil
	}
	var k minisign.PublicKey
	if err := k.UnmarshalText([]byte(strings.TrimSpace(path))); err != nil {
		return k, fmt.Errorf("%s is neither a minisign public key file nor a key", path)
	}
	return k, nil
}

func bootstrapDelegateCmd() *cobra.Command {
	var rootKey, out string
	var valid time.Duration
	cmd := &cobra.Command{
		Use:   "delegate SIGNING.pub",
		Short: "With the offline root key, let a signing key (CI's) sign lists until an expiry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := readPriv(rootKey)
			if err != nil {
				return err
			}
			sig, err := readPub(args[0])
			if err != nil {
				return err
			}
			d, ds := relaylist.Delegate(root, sig, time.Now().Add(valid).UTC().Truncate(time.Second))
			if err := os.WriteFile(out, d, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(out+".minisig", ds, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s and %s.minisig written: %s may sign relay lists for %v\n", out, out, relaylist.KeyString(sig), valid)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootKey, "root-key", "", "the offline root private key")
	cmd.Flags().StringVar(&out, "out", "delegation", "where to write the delegation")
	cmd.Flags().DurationVar(&valid, "valid", 90*24*time.Hour, "how long the signing key may sign")
	cmd.MarkFlagRequired("root-key")
	return cmd
}

// health is one relay's recorded dial outcomes.
type health struct{ ok, fail int }

// readHealth reads dial-outcome files: CSV rows "peer,successes,failures".
func readHealth(paths []string) (map[peer.ID]health, error) {
	out := map[peer.ID]health{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for i, r := range rows {
			if len(r) < 3 || (i == 0 && r[0] == "peer") {
				continue
			}
			id, err := peer.Decode(r[0])
			ok, err1 := strconv.Atoi(r[1])
			fail, err2 := strconv.Atoi(r[2])
			if err != nil || err1 != nil || err2 != nil || ok < 0 || fail < 0 {
				return nil, fmt.Errorf("%s line %d: want peer,successes,failures", p, i+1)
			}
			h := out[id]
			h.ok += ok
			h.fail += fail
			out[id] = h
		}
	}
	return out, nil
}

func bootstrapBuildCmd() *cobra.Command {
	var healthFiles []string
	var seq uint64
	var valid time.Duration
	var out string
	var minScore float64
	cmd := &cobra.Command{
		Use:   "build CANDIDATES.csv",
		Short: "Build a list from volunteers' relays (CSV: peer,addrs) and recorded dial outcomes: dead relays dropped, healthiest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			rows, err := csv.NewReader(f).ReadAll()
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			hs, err := readHealth(healthFiles)
			if err != nil {
				return err
			}
			l := &relaylist.List{Seq: seq, Expires: time.Now().Add(valid).UTC().Truncate(time.Second)}
			dropped := 0
			for i, r := range rows {
				if len(r) < 2 || (i == 0 && r[0] == "peer") {
					continue
				}
				id, err := peer.Decode(r[0])
				if err != nil {
					return fmt.Errorf("%s line %d: peer: %w", args[0], i+1, err)
				}
				rel := relaylist.Relay{Peer: id, Health: 0.5}
				for a := range strings.FieldsSeq(r[1]) {
					m, err := ma.NewMultiaddr(a)
					if err != nil {
						return fmt.Errorf("%s line %d: address %q: %w", args[0], i+1, a, err)
					}
					rel.Addrs = append(rel.Addrs, m)
				}
				if h, ok := hs[id]; ok && h.ok+h.fail > 0 {
					// Laplace-smoothed success rate of the recorded dials
					rel.Health = float64(h.ok+1) / float64(h.ok+h.fail+2)
				}
				if len(healthFiles) > 0 && rel.Health < minScore {
					dropped++
					continue
				}
				l.Relays = append(l.Relays, rel)
			}
			slices.SortStableFunc(l.Relays, func(x, y relaylist.Relay) int {
				switch {
				case x.Health > y.Health:
					return -1
				case x.Health < y.Health:
					return 1
				}
				return 0
			})
			if err := os.WriteFile(out, relaylist.MarshalCSV(l), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: seq %d, %d relays (%d dropped as dead), expires %s\n", out, seq, len(l.Relays), dropped, l.Expires.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&healthFiles, "health", nil, "dial-outcome files (CSV peer,successes,failures), repeatable")
	cmd.Flags().Uint64Var(&seq, "seq", uint64(time.Now().Unix()), "sequence number (higher than every earlier list)")
	cmd.Flags().DurationVar(&valid, "valid", 30*24*time.Hour, "how long the list is valid")
	cmd.Flags().StringVar(&out, "out", "relays.csv", "where to write the list")
	cmd.Flags().Float64Var(&minScore, "min-health", 0.2, "drop relays whose recorded health is below this")
	return cmd
}

func bootstrapSignCmd() *cobra.Command {
	var key, delegation, out string
	cmd := &cobra.Command{
		Use:   "sign RELAYS.csv",
		Short: "Sign a list with the delegated signing key and bundle it with the delegation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := readPriv(key)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			l, err := relaylist.ParseCSV(data)
			if err == nil {
				err = l.DecodeAll() // every row decodes before anything is signed
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			d, err := os.ReadFile(delegation)
			if err != nil {
				return err
			}
			ds, err := os.ReadFile(delegation + ".minisig")
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, relaylist.Sign(l, k, d, ds), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s written (seq %d, %d relays)\n", out, l.Seq, len(l.Relays))
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the signing private key")
	cmd.Flags().StringVar(&delegation, "delegation", "delegation", "the delegation (and DELEGATION.minisig)")
	cmd.Flags().StringVar(&out, "out", "relays.bundle", "where to write the bundle")
	cmd.MarkFlagRequired("key")
	return cmd
}

func verifyFile(path, root string, minSeq uint64) (*relaylist.List, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots, err := relaylist.Roots()
	if root != "" {
		var k minisign.PublicKey
		if k, err = readPub(root); err == nil {
			roots = []minisign.PublicKey{k}
		}
	}
	if err != nil {
		return nil, err
	}
	return relaylist.Verify(data, roots, time.Now(), minSeq)
}

func bootstrapVerifyCmd() *cobra.Command {
	var root string
	var minSeq uint64
	cmd := &cobra.Command{
		Use:   "verify BUNDLE",
		Short: "Check a bundle as a node would: delegation, signatures, expiry, sequence",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := verifyFile(args[0], root, minSeq)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: seq %d, %d relays, list expires %s, signing key %s delegated until %s\n",
				l.Seq, l.Len(), l.Expires.Format(time.RFC3339), relaylist.KeyString(l.SigningKey), l.Delegated.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "trust this root public key (file or key) instead of the built-in one")
	cmd.Flags().Uint64Var(&minSeq, "min-seq", 0, "refuse lists older than this sequence")
	return cmd
}

func bootstrapShowCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "show [BUNDLE]",
		Short: "Verify and print a bundle's relays (default: the list built into this binary)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var l *relaylist.List
			var err error
			if len(args) == 0 {
				roots, rerr := relaylist.Roots()
				if rerr != nil {
					return rerr
				}
				l, err = relaylist.Verify(relaylist.Embedded(), roots, time.Now(), 0)
			} else {
				l, err = verifyFile(args[0], root, 0)
			}
			if err == nil {
				err = l.DecodeAll()
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "seq %d, expires %s, %d relays, signed by %s (delegated until %s)\n", l.Seq, l.Expires.Format(time.RFC3339),
				len(l.Relays), relaylist.KeyString(l.SigningKey), l.Delegated.Format(time.RFC3339))
			for _, r := range l.Relays {
				var as []string
				for _, a := range r.Addrs {
					as = append(as, a.String())
				}
				fmt.Fprintf(w, "%.3f  %s  %s\n", r.Health, r.Peer, strings.Join(as, " "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "trust this root public key instead of the built-in one")
	return cmd
}

// readBundle reads and splits the bundle file at path (not verified).
func readBundle(path string) ([]byte, *relaylist.Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := relaylist.ParseBundle(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, b, nil
}

func bootstrapExportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export BUNDLE DIR",
		Short: "Write a bundle's four parts, so that the minisign CLI can check them by hand",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			if err := os.MkdirAll(args[1], 0o755); err != nil {
				return err
			}
			for name, part := range map[string][]byte{"delegation": b.Delegation, "delegation.minisig": b.DelegationSig,
				"relays.csv": b.List, "relays.csv.minisig": b.ListSig} {
				if err := os.WriteFile(filepath.Join(args[1], name), part, 0o644); err != nil {
					return err
				}
			}
			key := ""
			for line := range bytes.SplitSeq(b.Delegation, []byte("\n")) {
				if k, ok := bytes.CutPrefix(line, []byte("key ")); ok {
					key = string(k)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "check with:\n  minisign -Vm %s -P ROOT_PUBLIC_KEY\n  minisign -Vm %s -P %s\n",
				filepath.Join(args[1], "delegation"), filepath.Join(args[1], "relays.csv"), key)
			return nil
		},
	}
}
