package node

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// natCell is one cell of the NAT matrix: how a and b reach the internet and
// the path physics and libp2p allow between them.
type natCell struct {
	name    string
	a, b    natKind
	hairpin bool     // natSame: the router loops its public address back
	noMDNS  bool     // a and b run no mDNS box (the daemon runs it on private networks)
	want    []string // acceptable final paths (api.Peer.Path)
}

var (
	wantDirect  = []string{"direct", "punched"} // a dial or a punch may win the race
	wantRelayed = []string{"relayed"}
	wantLAN     = []string{"lan"}
)

// natCells are the cells of issue #15. Where a full-cone side is involved
// the other side can simply dial it, so a plain dial and DCUtR race.
var natCells = []natCell{
	{"public-public", natPublic, natPublic, false, false, []string{"direct"}},
	{"fc-fc", natFull, natFull, false, false, wantDirect},
	{"fc-ar", natFull, natAddr, false, false, wantDirect},
	{"fc-pr", natFull, natPort, false, false, wantDirect},
	{"ar-ar", natAddr, natAddr, false, false, wantDirect},
	{"ar-pr", natAddr, natPort, false, false, wantDirect},
	{"pr-pr", natPort, natPort, false, false, wantDirect},
	{"fc-sym", natFull, natSym, false, false, wantDirect},
	{"ar-sym", natAddr, natSym, false, false, wantDirect},
	// DCUtR cannot punch it; birthday-paradox probing (core/birthday) can
	{"pr-sym", natPort, natSym, false, false, wantDirect},
	{"sym-sym", natSym, natSym, false, false, wantRelayed},
	// same NAT with NAT loopback: whichever comes first, mDNS's private
	// addresses or the router's public address looped back, is a direct
	// path; libp2p opens no second direct connection beside it
	{"same-nat-hairpin", natPort, natSame, true, false, []string{"lan", "direct"}},
	// without mDNS, the LAN hash in presence says they share the LAN:
	// they meet by relay, learn the private addresses by peer exchange
	// and dial them at once
	{"same-nat-no-hairpin-no-mdns", natPort, natSame, false, true, wantLAN},
	{"double-pr", natDouble, natPort, false, false, wantDirect},
	// a speaks TCP only: DCUtR punches TCP with b's port-preserved TCP
	// address and the ordering of core/transport/punchtcp.go
	{"udpoff-pr", natUDPOff, natPort, false, false, wantDirect},
}

// cellResult is what one run of a cell measured.
type cellResult struct {
	FirstPath string        // the path b's first message to a arrived by
	First     time.Duration // from b knowing a as a member to a holding b's first message
	Path      string        // b's path to a at the end
	ToDirect  time.Duration // from the same start to the first direct path (0: none)
	// AddrsToDirect is from when a and b both hold the other's addresses
	// (a presence record; the start, if they held them before it) to the
	// first direct path: issue #15's "once both sides know each other's
	// addresses" (0: no direct path).
	AddrsToDirect time.Duration
	MsgPath       string // the path the last message arrived by
	Birthday      int    // birthday probing runs of a and b that made a direct path
}

func (r cellResult) String() string {
	return fmt.Sprintf("first message %v by %s, final path %s, direct after %v (%v after both held the addresses), last message by %s",
		r.First.Round(time.Millisecond), r.FirstPath, r.Path, r.ToDirect.Round(time.Millisecond), r.AddrsToDirect.Round(time.Millisecond), r.MsgPath)
}

// TestNATMatrix runs every cell once: two members a and b behind the cell's
// NATs and a third, r, on a public host that relays for its circle; their
// only common ground is the shared folder. Each subtest asserts the path b
// reaches a by and that a message crosses it. BenchmarkNATMatrix runs the
// cells many times for BENCHMARKS.md.
func TestNATMatrix(t *testing.T) {
	testenv.NeedNATLab(t)
	for _, c := range natCells {
		t.Run(c.name, func(t *testing.T) {
			r := runNATCell(t, c)
			t.Logf("%s: %s", c.name, r)
			if !slices.Contains(c.want, r.Path) {
				t.Errorf("path %s, want %s", r.Path, strings.Join(c.want, " or "))
			}
			if c.needsBirthday() && r.Birthday == 0 {
				t.Errorf("no birthday probing run (b's or a's Status) made the direct path")
			}
			if r.MsgPath != r.Path && !(isDirect(r.MsgPath) && isDirect(r.Path)) { // a's view of a direct path may differ from b's
				t.Errorf("the last message came by %s, want the %s path", r.MsgPath, r.Path)
			}
		})
	}
}

// holdRelayed is how long a cell whose pair stays relayed is watched for a
// direct path that must not come (the transport retries DCUtR after 1 s and
// 5 s, jittered).
const holdRelayed = 12 * time.Second

// runNATCell builds the cell's lab, forms the circle through the folder and
// measures b's way to a.
func runNATCell(t testing.TB, c natCell) cellResult {
	lab := newNATLab(t, c.a, c.b, c.hairpin)
	labDir, err := os.MkdirTemp("", "nm-") // short: API socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(labDir) })
	os.MkdirAll(filepath.Join(labDir, "shared"), 0o755)
	// r relays with consent once AutoNAT (members dialing back) finds it
	// public: no forced answer
	r := lab.start(t, labDir, "r", labLANPort, labRelayEnv+"=1")
	var env []string
	if c.noMDNS {
		env = append(env, labNoMDNSEnv+"=1")
	}
	a := lab.start(t, labDir, "a", labLANPort, env...)
	b := lab.start(t, labDir, "b", labLANPort+1, env...)
	ctx := context.Background()
	ci, err := r.api.CreateCircle(ctx, api.CreateCircleRequest{Name: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*labNode{a, b} {
		labJoin(t, r, m, ci.ID)
	}
	testenv.WaitFor(t, "a and b knowing each other as members", 60*time.Second, func() bool {
		return knows(a, b.id) && knows(b, a.id)
	})

	var res cellResult
	start := time.Now()
	if _, err := b.api.Send(ctx, api.SendRequest{Circle: ci.ID, To: []string{a.id}, Text: "first"}); err != nil {
		t.Fatal(err)
	}
	gotFirst := false
	wantRelay := slices.Equal(c.want, wantRelayed)
	// long enough for every DCUtR retry of the transport (after 1, 5, 15
	// and 45 s, jittered up to 1.5×): a cell is judged on all of them
	deadline := start.Add(75 * time.Second)
	var settled time.Time // when b's path first was one of c.want
	var addrsKnown time.Time
	var last string
	for {
		now := time.Now()
		if addrsKnown.IsZero() && res.ToDirect == 0 && holdsAddrs(a, b.id) && holdsAddrs(b, a.id) {
			addrsKnown = now
		}
		if !gotFirst {
			if m, ok := findMessage(a, "first"); ok {
				gotFirst, res.First, res.FirstPath = true, now.Sub(start), m.Path
			}
		}
		last = b.peerPath(a.id)
		if res.ToDirect == 0 && (isDirect(last) || isDirect(a.peerPath(b.id))) {
			res.ToDirect = now.Sub(start)
			if addrsKnown.IsZero() { // a direct path before the second look: they held them
				addrsKnown = now
			}
			res.AddrsToDirect = now.Sub(addrsKnown)
		}
		if settled.IsZero() && slices.Contains(c.want, last) {
			settled = now
		}
		done := !settled.IsZero() && gotFirst
		if wantRelay {
			// relayed is the end only if no direct path comes meanwhile
			done = done && (now.Sub(settled) >= holdRelayed || res.ToDirect != 0)
		}
		if done {
			break
		}
		if now.After(deadline) {
			if !gotFirst {
				t.Fatalf("after %v: no first message (b's path to a %s)", now.Sub(start).Round(time.Millisecond), last)
			}
			break // the caller compares the path with the cell's
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Path = b.peerPath(a.id)
	res.Birthday = birthdayDirect(ctx, a, b)
	if c.needsBirthday() && isDirect(res.Path) {
		// The path turns direct when the easy side's dial lands; the hard
		// side counts its run a moment later, once the easy side closed
		// the attempt's stream. One attempt is bounded (8 s), so is this.
		for end := time.Now().Add(10 * time.Second); res.Birthday == 0 && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
			res.Birthday = birthdayDirect(ctx, a, b)
		}
	}
	text := fmt.Sprintf("over %s", res.Path)
	if _, err := b.api.Send(ctx, api.SendRequest{Circle: ci.ID, To: []string{a.id}, Text: text}); err != nil {
		t.Fatal(err)
	}
	res.MsgPath = waitMessage(t, a, text, 30*time.Second).Path
	return res
}

// birthdayDirect is how many birthday probing runs of a and b made a
// direct path (their Status).
func birthdayDirect(ctx context.Context, nodes ...*labNode) int {
	n := 0
	for _, ln := range nodes {
		if st, err := ln.api.Status(ctx); err == nil && st.Birthday != nil {
			n += st.Birthday.Direct
		}
	}
	return n
}

// needsBirthday reports whether only birthday probing can make the cell's
// path direct: one side symmetric, the other filtering by port, so DCUtR's
// punch from a guessed port never gets in.
func (c natCell) needsBirthday() bool {
	return (c.a == natPort && c.b == natSym) || (c.a == natSym && c.b == natPort)
}

func isDirect(path string) bool { return path == "direct" || path == "punched" || path == "lan" }

// labJoin makes m a member of inviter's circle through the shared folder.
func labJoin(t testing.TB, inviter, m *labNode, circleID string) {
	t.Helper()
	ctx := context.Background()
	inv, err := inviter.api.Invite(ctx, api.InviteRequest{Circle: circleID, InPerson: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.api.Join(ctx, api.JoinRequest{Invite: inv.Invite})
	if err != nil {
		t.Fatalf("%s joining: %v", m.name, err)
	}
	testenv.WaitFor(t, m.name+" joined", 60*time.Second, func() bool {
		s, err := m.api.JoinStatus(ctx, st.ID, time.Second)
		if err == nil && s.State == "refused" {
			t.Fatalf("%s's join refused: %s", m.name, s.Error)
		}
		return err == nil && s.State == "joined"
	})
}

// knows reports whether ln lists peer as a member of one of its circles.
func knows(ln *labNode, peer string) bool {
	_, ok := ln.peer(peer)
	return ok
}

// holdsAddrs reports whether ln holds a presence record of peer with
// addresses.
func holdsAddrs(ln *labNode, peer string) bool {
	p, ok := ln.peer(peer)
	return ok && !p.Presence.IsZero() && len(p.Addrs) > 0
}

// waitMessage waits until ln's inbox holds a message with text.
func waitMessage(t testing.TB, ln *labNode, text string, timeout time.Duration) api.Message {
	t.Helper()
	var got api.Message
	testenv.WaitFor(t, ln.name+" receiving "+text, timeout, func() bool {
		m, ok := findMessage(ln, text)
		got = m
		return ok
	})
	return got
}

// findMessage looks for a message with text in ln's inbox.
func findMessage(ln *labNode, text string) (api.Message, bool) {
	msgs, err := ln.api.Messages(context.Background(), 0, 0)
	if err != nil {
		return api.Message{}, false
	}
	for _, m := range msgs {
		if m.Text == text {
			return m, true
		}
	}
	return api.Message{}, false
}

// BenchmarkNATMatrix runs every cell REMORA_NATMATRIX_RUNS times (default
// 20) and logs one BENCHMARKS.md table row per cell: the paths reached,
// the median and worst time to the first message (any path) and to the
// first direct path. Each run is a fresh lab.
//
//	go test ./core/node -run '^$' -bench NATMatrix -benchtime 1x -timeout 3h
func BenchmarkNATMatrix(b *testing.B) {
	testenv.NeedNATLab(b)
	runs := 20
	if v, err := strconv.Atoi(os.Getenv("REMORA_NATMATRIX_RUNS")); err == nil && v > 0 {
		runs = v
	}
	var rows []string
	for _, c := range natCells {
		var res []cellResult
		for i := range runs {
			b.Run(fmt.Sprintf("%s/%d", c.name, i), func(b *testing.B) {
				for b.Loop() {
					r := runNATCell(b, c)
					b.Logf("%s: %s", c.name, r) // each run, so that an interrupted matrix still tells
					res = append(res, r)
				}
			})
		}
		if len(res) > 0 {
			rows = append(rows, natRow(c, res))
		}
	}
	// printed, not logged: a parent benchmark's log is dropped once it
	// has sub-benchmarks
	fmt.Printf("%d runs per cell:\n| cell | want | paths reached | first message by | first message, median (max) | direct, median (max) | direct once both held the addresses, median (max) |\n|---|---|---|---|---|---|---|\n%s\n",
		runs, strings.Join(rows, "\n"))
}

// natRow summarises a cell's runs as a markdown table row.
func natRow(c natCell, res []cellResult) string {
	paths, firstBy := map[string]int{}, map[string]int{}
	var first, direct, fromAddrs []time.Duration
	for _, r := range res {
		paths[r.Path]++
		by, _, _ := strings.Cut(r.FirstPath, ":") // channel:NAME, mailbox:PEER
		firstBy[by]++
		first = append(first, r.First)
		if r.ToDirect > 0 {
			direct = append(direct, r.ToDirect)
			fromAddrs = append(fromAddrs, r.AddrsToDirect)
		}
	}
	counts := func(m map[string]int) string {
		var ps []string
		for _, p := range slices.Sorted(maps.Keys(m)) {
			ps = append(ps, fmt.Sprintf("%s %d/%d", p, m[p], len(res)))
		}
		return strings.Join(ps, ", ")
	}
	stat := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "–"
		}
		slices.Sort(ds)
		return fmt.Sprintf("%d ms (%d ms)", ds[len(ds)/2].Milliseconds(), ds[len(ds)-1].Milliseconds())
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |", c.name, strings.Join(c.want, "/"), counts(paths), counts(firstBy), stat(first), stat(direct), stat(fromAddrs))
}
