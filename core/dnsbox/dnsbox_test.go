package dnsbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/testenv"
)

// knot returns options for a fresh name in the test zone of the real Knot
// DNS server testenv/svc-dns.sh runs.
func knot(t *testing.T) Options {
	t.Helper()
	v := testenv.Need(t, "dns", "REMORA_DNS_SERVER", "REMORA_DNS_ZONE", "REMORA_DNS_TSIG_NAME", "REMORA_DNS_TSIG_ALGORITHM", "REMORA_DNS_TSIG_SECRET_FILE")
	secret, err := os.ReadFile(v[4])
	if err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	return Options{Name: "_remora-" + hex.EncodeToString(rnd[:]) + "." + v[1], Server: v[0], UpdateServer: v[0],
		TSIGName: v[2], TSIGAlgorithm: v[3], TSIGSecret: strings.TrimSpace(string(secret))}
}

func mustNew(t *testing.T, o Options) *Box {
	t.Helper()
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKnotRoundTrip: two members publish by RFC 2136 + TSIG to a real Knot
// DNS server and read each other's entries; a republish replaces (no
// duplicate), an unchanged name reads as not modified, an entry too big
// for a TXT answer is refused, a read-only box says so.
func TestKnotRoundTrip(t *testing.T) {
	o := knot(t)
	ctx := context.Background()
	alice, bob := mustNew(t, o), mustNew(t, o)
	big := bytes.Repeat([]byte{0xab}, 1500) // six 255-byte strings
	if err := alice.Put(ctx, map[string][]byte{"ralice": []byte("sealed-a1")}); err != nil {
		t.Fatal(err)
	}
	if err := bob.Put(ctx, map[string][]byte{"rbob": big}); err != nil {
		t.Fatal(err)
	}
	got, err := alice.Get(ctx)
	if err != nil || string(got["ralice"]) != "sealed-a1" || !bytes.Equal(got["rbob"], big) {
		t.Fatalf("Get: %v, %d entries %q", err, len(got), keys(got))
	}
	if _, err := alice.Get(ctx); !errors.Is(err, discovery.ErrNotModified) {
		t.Fatalf("unchanged Get: %v, want ErrNotModified", err)
	}
	// A republish under a new key (next epoch) drops the old one.
	if err := alice.Put(ctx, map[string][]byte{"ralice2": []byte("sealed-a2")}); err != nil {
		t.Fatal(err)
	}
	got, err = bob.Get(ctx)
	if err != nil || len(got) != 2 || string(got["ralice2"]) != "sealed-a2" || got["ralice"] != nil {
		t.Fatalf("after republish: %v, %q", err, keys(got))
	}
	// Other TXT records at the name are left alone.
	if err := alice.Put(ctx, map[string][]byte{"ralice2": []byte("sealed-a3")}); err != nil {
		t.Fatal(err)
	}
	rrs, _ := alice.lookup(ctx, o.Server)
	if len(rrs) != 2 {
		t.Fatalf("%d TXT records at %s, want 2 (one per member)", len(rrs), o.Name)
	}
	if err := alice.Put(ctx, map[string][]byte{"rx": make([]byte, maxValue+1)}); err == nil {
		t.Fatal("an entry over the limit was published")
	}
	ro := o
	ro.UpdateServer = ""
	if err := mustNew(t, ro).Put(ctx, map[string][]byte{"r": []byte("x")}); !errors.Is(err, discovery.ErrReadOnly) {
		t.Fatalf("read-only Put: %v", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestKnotRefusals: a wrong TSIG secret and a name outside the zone are
// refused by the real server, each with an error that says what to fix.
func TestKnotRefusals(t *testing.T) {
	o := knot(t)
	ctx := context.Background()
	wrong := o
	wrong.TSIGSecret = "bm90IHRoZSBrZXk="
	err := mustNew(t, wrong).Put(ctx, map[string][]byte{"r": []byte("x")})
	if err == nil || !strings.Contains(discovery.Fix(err, ""), "tsig") {
		t.Fatalf("wrong TSIG secret: %v (fix %q)", err, discovery.Fix(err, ""))
	}
	outside := o
	outside.Name, outside.Zone = "_remora.example.org", o.Name[strings.Index(o.Name, ".")+1:]
	if _, err := New(outside); err == nil {
		t.Fatal("a name outside the configured zone was accepted")
	}
	outside.Zone = ""
	err = mustNew(t, outside).Put(ctx, map[string][]byte{"r": []byte("x")})
	if err == nil || discovery.Fix(err, "") == "" {
		t.Fatalf("name outside the zone: %v (fix %q)", err, discovery.Fix(err, ""))
	}
	t.Logf("wrong key: %v; outside: %v", discovery.Fix(mustNew(t, wrong).Put(ctx, map[string][]byte{"r": []byte("x")}), ""), err)
}

func TestNewChecks(t *testing.T) {
	for _, o := range []Options{
		{},
		{Name: "a..b", Server: "127.0.0.1:53"},
		{Name: "x.example", Server: "127.0.0.1:53", UpdateServer: "127.0.0.1:53"},
		{Name: "x.example", Server: "127.0.0.1:53", UpdateServer: "127.0.0.1:53", TSIGName: "k", TSIGSecret: "%%"},
		{Name: "x.example", Server: "127.0.0.1:53", UpdateServer: "127.0.0.1:53", TSIGName: "k", TSIGSecret: "AAAA", TSIGAlgorithm: "hmac-md5"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("remora1", "rkey", b64.EncodeToString([]byte("value")))
	f.Add("remora1", "", "")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		key, val, ok := parse(&dns.TXT{Txt: []string{a, b, c}})
		if ok && (key == "" || len(val) == 0 || len(val) > maxValue) {
			t.Fatalf("accepted %q %q %q", a, b, c)
		}
	})
}
