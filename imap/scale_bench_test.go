package imap

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/benchdoc"
)

var (
	scaleSizes = flag.String("scale", "10,50,150", "circle sizes BenchmarkPresenceScaleList runs")
	scaleRound = flag.Duration("scale-round", time.Minute, "presence interval (one round) in BenchmarkPresenceScaleList")
	scaleForm  = flag.String("scale-form", "joins", "how BenchmarkPresenceScaleList forms its circle: joins (invites through the list, one at a time) or rest (the join protocol run in memory before the nodes start, nodetest.FormCircleAtRest)")
)

// scaleUsers are the mail accounts the members are spread over; member i
// is scaleUsers[i%6]+"+<list>m<i>", reading its own folder of that account.
var scaleUsers = []string{"alice", "bob", "carol", "dave", "erin", "frank"}

// BenchmarkPresenceScaleList is matrix's BenchmarkPresenceScale through a
// mailing list: circles of -scale members (default 10, 50, 150), real core
// nodes in this process, each the member of one fresh mlmmj list on a
// private mail system (testenv.StartPrivate: Postfix, Dovecot, mlmmj; the
// list of each size is new, so every mailbox holds only this run's mail).
// Member i posts as and receives at a plus address of one of six accounts
// (alice+s10m003@…: its copies land in folder s10m003, which it alone
// reads). Once the circle is formed every node is restarted at the same
// moment; reported are the time until every member holds every other
// member's presence record issued after that moment, and the requests per
// member in that round and in the steady round that follows (presence
// interval -scale-round).
//
// What is counted: each member's IMAP and SMTP connections go through a
// TCP proxy of its own, in plaintext (imap_tls and smtp_tls "none",
// unauthenticated SMTP on the relay port, so the proxy can read the
// commands; the adapter otherwise works as configured for a list). A
// request is one IMAP command (a tagged line: SELECT, FETCH, IDLE, …; the
// DONE ending an IDLE is not one) or one SMTP command (EHLO, MAIL, RCPT,
// DATA, QUIT, …); connections and bytes each way are counted beside them.
// Bytes per member-day: what one member submits per day at the default
// presence interval (5 min, 288 rounds), and what the server stores for
// it: the growth of every maildir and of the list's archive during the
// steady round, per member, times 288, mail files only (Dovecot's index
// growth is reported beside it) (each post is stored once per
// member's mailbox and once in mlmmj's archive; nothing is deleted, the
// channel's default consumed "keep").
//
//	REMORA_TESTENV=/tmp/remora-testenv go test ./imap -run '^$' -bench PresenceScaleList -benchtime 1x -timeout 90m -scale 10,20
func BenchmarkPresenceScaleList(b *testing.B) {
	nodetest.ServeProfiles(b)
	needMail(b) // skipped like every mail test without the test servers
	mail := testenv.StartPrivate(b, "mail")
	var results []listScaleResult
	for _, f := range strings.Split(*scaleSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("-scale: %q is not a circle size", f)
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { results = append(results, presenceScaleList(b, mail, n)) })
	}
	writeListScale(b, results)
}

// listScaleResult is one circle size's figures.
type listScaleResult struct {
	members          int
	formed           time.Duration
	converged        time.Duration // 0: not within the deadline
	fraction         float64       // of member pairs holding a fresh record at the end
	restartPerMember float64       // requests per member from the restart until all held
	perMember        float64       // requests per member in a steady round
	readKiB          float64       // KiB read per member in a steady round (IMAP, server → member)
	sentDayKiB       float64       // KiB one member submits per day (SMTP, 288 rounds)
	storedDayKiB     float64       // KiB the server stores per member-day (maildirs + archive)
	load             string
	detail           string
}

// privateMail is the mail test system of a private instance.
func privateMail(p *testenv.Private) mailEnv {
	return mailEnv{smtp: p.Get("REMORA_MAIL_SMTP"), submission: p.Get("REMORA_MAIL_SUBMISSION"), smtps: p.Get("REMORA_MAIL_SMTPS"),
		imap: p.Get("REMORA_MAIL_IMAP"), imaps: p.Get("REMORA_MAIL_IMAPS"), ca: p.Get("REMORA_MAIL_CA"), otherCA: p.Get("REMORA_MAIL_OTHER_CA"),
		domain: p.Get("REMORA_MAIL_DOMAIN"), dovecotConf: p.Get("REMORA_MAIL_DOVECOT_CONF"), pidFile: p.Get("REMORA_MAIL_DOVECOT_PIDFILE")}
}

func presenceScaleList(b *testing.B, mail *testenv.Private, n int) listScaleResult {
	env := privateMail(mail)
	name := fmt.Sprintf("scale%d", n)
	list := name + "@" + env.domain
	type member struct{ user, folder string }
	members := make([]member, n)
	var addrs []string
	for i := range members {
		members[i] = member{scaleUsers[i%len(scaleUsers)], fmt.Sprintf("s%dm%03d", n, i)}
		addrs = append(addrs, members[i].user+"+"+members[i].folder)
	}
	mail.MailingList(name, addrs...)

	root := b.TempDir()
	nodes := make([]*nodetest.Node, n)
	imapc, smtpc := make([]*connCounter, n), make([]*connCounter, n)
	for i, m := range members {
		imapc[i], smtpc[i] = newConnCounter(b, env.imap, "imap"), newConnCounter(b, env.smtp, "smtp")
		cfg := env.config(ModeList, m.user, map[string]any{
			"list_address": list, "address": m.user + "+" + m.folder + "@" + env.domain, "folder": m.folder,
			"imap": imapc[i].addr, "imap_tls": TLSNone, "smtp": smtpc[i].addr, "smtp_tls": TLSNone, "smtp_username": "-",
			"insecure_plaintext": true, "ca_file": nil,
		})
		nodes[i] = nodetest.New(b, fmt.Sprintf("m%03d", i), filepath.Join(root, strconv.Itoa(i)), nodetest.Channel{
			Name: "mail", ID: name, Adapter: "imap",
			Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
				return New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "mail", Config: cfg, Secrets: password(m.user),
					StateDir: stateDir, Logger: nodetest.Logger(fmt.Sprintf("m%03d", i))})
			}})
		nodes[i].Tune = func(o *node.Options) {
			o.PresenceInterval = *scaleRound
			o.LiveTimeout = 5 * time.Second
		}
	}
	formStart := time.Now()
	nodetest.FormAndStart(b, nodes, *scaleForm, func(k int, took time.Duration) {
		nodetest.Progress(b, "%d members: join %d answered in %v", n, k, took.Round(10*time.Millisecond))
	}, func(fresh, pairs int, spread string) {
		nodetest.Progress(b, "%d members, first start: %d of %d pairs hold a fresh record; %s", n, fresh, pairs, spread)
	})
	defer nodetest.Parallel(n, 8, func(i int) { nodes[i].Stop() })
	testenv.WaitFor(b, "every member knowing every other", 20*time.Minute, func() bool { return nodetest.AllKnown(nodes) })
	formed := time.Since(formStart)
	nodetest.Progress(b, "%d members: circle formed (-scale-form %s) in %v", n, *scaleForm, formed.Round(time.Second))

	// The round: everyone restarts at once and publishes fresh presence.
	nodetest.Parallel(n, 8, func(i int) { nodes[i].Stop() })
	resetAll(imapc, smtpc)
	t0 := time.Now()
	nodetest.Parallel(n, 8, func(i int) { nodes[i].Start() })
	// the window opens once all are up: starting 100 nodes in one
	// process takes minutes, which are not the circle's
	deadline := time.Now().Add(max(*scaleRound, 5*time.Minute))
	converged, fresh, pairs := nodetest.AwaitPresence(nodes, t0, deadline, nil)
	if converged == 0 {
		b.Logf("%d members: not converged after %v: %d of %d member pairs hold a fresh record", n, time.Since(t0).Round(time.Second), fresh, pairs)
	}
	restart := sumConns(imapc, smtpc)
	restartWindow := time.Since(t0)
	nodetest.Progress(b, "%d members: all presence held %v after the restart; %s", n, converged.Round(100*time.Millisecond), restart.String(n))

	// A steady round, aligned to the rounds on the clock as in matrix's
	// BenchmarkPresenceScale (node.nextRound).
	at := time.Now().Add(*scaleRound / 2).Truncate(*scaleRound).Add(*scaleRound)
	time.Sleep(time.Until(at.Add(-time.Second)))
	resetAll(imapc, smtpc)
	mails0, other0 := storedBytes(mail.Dir, name)
	load := loadAverage()
	time.Sleep(*scaleRound)
	steady := sumConns(imapc, smtpc)
	// the window ends just before the next round's posts, and this
	// round's were all delivered within it (convergence takes seconds)
	mails1, other1 := storedBytes(mail.Dir, name)
	stored, indexes := mails1-mails0, other1-other0
	perMember := float64(steady.requests()) / float64(n)
	rounds := (24 * time.Hour).Seconds() / (5 * time.Minute).Seconds()
	sentDay := float64(steady.up["smtp"]) / float64(n) * rounds
	storedDay := float64(stored) / float64(n) * rounds
	indexDay := float64(indexes) / float64(n) * rounds
	readKiB := float64(steady.down["imap"]) / float64(n) / 1024
	b.ReportMetric(converged.Seconds(), "s-converge")
	b.ReportMetric(float64(fresh)/float64(pairs), "fraction-converged")
	b.ReportMetric(perMember, "requests/member/round")
	b.ReportMetric(float64(restart.requests())/float64(n), "requests/member/restart-round")
	b.ReportMetric(sentDay/1024, "KiB-sent/member-day")
	b.ReportMetric(storedDay/1024, "KiB-stored/member-day")
	b.ReportMetric(indexDay/1024, "KiB-index-growth/member-day")
	b.ReportMetric(readKiB, "KiB-read/member/round")
	b.Logf("%d members, restart round (%v): %s", n, restartWindow.Round(time.Second), restart.String(n))
	b.Logf("%d members, steady round (%v, load average %s): %s", n, *scaleRound, load, steady.String(n))
	nodetest.Progress(b, "%d members: steady round (load average %s) %s; stored %d bytes of mail, index files grew %d bytes", n, load, steady.String(n), stored, indexes)
	return listScaleResult{members: n, formed: formed, converged: converged, fraction: float64(fresh) / float64(pairs),
		restartPerMember: float64(restart.requests()) / float64(n), perMember: perMember, readKiB: readKiB,
		sentDayKiB: sentDay / 1024, storedDayKiB: storedDay / 1024, load: load,
		detail: fmt.Sprintf("steady round %s; on the server the round stored %d bytes of mail and Dovecot's index files grew %d bytes (%.0f KiB per member-day)", steady.String(n), stored, indexes, indexDay/1024)}
}

// writeListScale puts the run's table into BENCHMARKS.md and its plots into
// plots/ (testenv/benchdoc).
func writeListScale(b *testing.B, rs []listScaleResult) {
	if len(rs) == 0 {
		return
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Run %s, presence round %v, private mail system (Postfix, Dovecot, mlmmj), a fresh list per size; command:\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *scaleRound)
	fmt.Fprintf(&md, "    REMORA_TESTENV=/tmp/remora-testenv REMORA_BENCH_WRITE=1 go test ./imap -run '^$' -bench PresenceScaleList -benchtime 1x -timeout 90m -scale %s -scale-round %v -scale-form %s\n\n", *scaleSizes, *scaleRound, *scaleForm)
	md.WriteString("| members | circle formed in | all presence held after a restart of all | requests per member: restart until all held / a steady round | KiB read per member per steady round | KiB submitted per member-day (5 min interval) | KiB stored on the server per member-day (every copy) | load average (steady round) |\n|---|---|---|---|---|---|---|---|\n")
	var conv, reqs benchdoc.Series
	conv.Name, reqs.Name = "mailing list (mlmmj)", "mailing list (mlmmj)"
	for _, r := range rs {
		c := fmt.Sprintf("%.1f s", r.converged.Seconds())
		if r.converged == 0 {
			c = fmt.Sprintf("not within the deadline (%.0f %% of pairs)", 100*r.fraction)
		} else {
			conv.X, conv.Y = append(conv.X, float64(r.members)), append(conv.Y, r.converged.Seconds())
		}
		fmt.Fprintf(&md, "| %d | %v | %s | %.1f / %.1f | %.0f | %.0f | %.0f | %s |\n", r.members, r.formed.Round(time.Second), c,
			r.restartPerMember, r.perMember, r.readKiB, r.sentDayKiB, r.storedDayKiB, r.load)
		reqs.X, reqs.Y = append(reqs.X, float64(r.members)), append(reqs.Y, r.perMember)
	}
	md.WriteString("\n")
	for _, r := range rs {
		fmt.Fprintf(&md, "- %d members: %s\n", r.members, r.detail)
	}
	md.WriteString("\n![convergence](plots/scale-list-convergence.svg) ![requests](plots/scale-list-requests.svg)\n")
	benchdoc.Section(b, "scale-list", md.String())
	benchdoc.Lines(b, "scale-list-convergence.svg", "Every member holds every other's presence (mailing list)", "members", "seconds after a restart of all", conv)
	benchdoc.Lines(b, "scale-list-requests.svg", "Requests per member per presence round (mailing list)", "members", "IMAP + SMTP commands", reqs)
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}

// storedBytes is the size of the mails in the private mail system's
// maildirs and in list's mlmmj archive, and of every other file there
// (Dovecot's indexes and caches).
func storedBytes(dir, list string) (mails, other int64) {
	for _, root := range []string{filepath.Join(dir, "mail", "maildirs"), filepath.Join(dir, "mail", "mlmmj", list, "archive")} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			switch filepath.Base(filepath.Dir(path)) {
			case "cur", "new", "archive":
				mails += fi.Size()
			default:
				other += fi.Size()
			}
			return nil
		})
	}
	return mails, other
}

// connCounter is a TCP proxy in front of one server (IMAP or SMTP) that
// counts one member's connections, commands by kind and bytes each way.
type connCounter struct {
	addr, proto string
	mu          sync.Mutex
	c           connCounts
}

// connCounts: count by kind ("imap FETCH", "smtp MAIL", "imap connections",
// …); up and down by protocol.
type connCounts struct {
	count, up, down map[string]int64
}

func (r *connCounts) add(o connCounts) {
	if r.count == nil {
		r.count, r.up, r.down = map[string]int64{}, map[string]int64{}, map[string]int64{}
	}
	for k, v := range o.count {
		r.count[k] += v
	}
	for k, v := range o.up {
		r.up[k] += v
	}
	for k, v := range o.down {
		r.down[k] += v
	}
}

// requests is the number of commands, IMAP and SMTP.
func (r *connCounts) requests() int64 {
	var t int64
	for k, v := range r.count {
		if !strings.HasSuffix(k, " connections") {
			t += v
		}
	}
	return t
}

// String is the per-member counts by kind and bytes by protocol.
func (r *connCounts) String(n int) string {
	var kinds []string
	for k := range r.count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(r.count[k])/float64(n)))
	}
	for _, p := range []string{"imap", "smtp"} {
		parts = append(parts, fmt.Sprintf("%s %.1f KiB up, %.1f KiB down", p, float64(r.up[p])/float64(n)/1024, float64(r.down[p])/float64(n)/1024))
	}
	return fmt.Sprintf("per member: %.1f commands; ", float64(r.requests())/float64(n)) + strings.Join(parts, "; ")
}

func newConnCounter(t testing.TB, upstream, proto string) *connCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc := &connCounter{addr: ln.Addr().String(), proto: proto}
	cc.reset()
	var wg sync.WaitGroup
	var open sync.Map // net.Conn → struct{}
	t.Cleanup(func() {
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			open.Store(c, struct{}{})
			open.Store(up, struct{}{})
			cc.note(proto+" connections", 0, 0)
			wg.Go(func() {
				cc.commands(io.TeeReader(c, countWriter(func(n int) { cc.note("", n, 0) })), up)
				up.Close()
			})
			wg.Go(func() {
				io.Copy(countWriter(func(n int) { cc.note("", 0, n) }), io.TeeReader(up, c))
				c.Close()
				open.Delete(c)
				open.Delete(up)
			})
		}
	})
	return cc
}

// note adds one to kind (unless empty) and bytes up and down.
func (cc *connCounter) note(kind string, up, down int) {
	cc.mu.Lock()
	if kind != "" {
		cc.c.count[kind]++
	}
	cc.c.up[cc.proto] += int64(up)
	cc.c.down[cc.proto] += int64(down)
	cc.mu.Unlock()
}

var literalRE = regexp.MustCompile(`\{(\d+)\+?\}\r?\n$`)

// commands copies the client's stream to the server, counting commands:
// IMAP tagged lines (literals skipped; DONE is not a command), SMTP lines
// outside DATA.
func (cc *connCounter) commands(from io.Reader, to io.Writer) {
	r := bufio.NewReader(from)
	inData, cont := false, false // cont: the line goes on a command after a literal
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := to.Write(line); werr != nil {
				return
			}
			f := strings.Fields(string(line))
			switch {
			case cc.proto == "smtp" && inData:
				inData = !bytes.Equal(bytes.TrimRight(line, "\r\n"), []byte("."))
			case cc.proto == "smtp" && len(f) > 0:
				verb := strings.ToUpper(f[0])
				cc.note("smtp "+verb, 0, 0)
				inData = verb == "DATA"
			case cc.proto == "imap" && cont:
			case cc.proto == "imap" && len(f) >= 2 && !strings.EqualFold(f[0], "DONE"):
				verb := strings.ToUpper(f[1])
				if verb == "UID" && len(f) >= 3 {
					verb += " " + strings.ToUpper(f[2])
				}
				cc.note("imap "+verb, 0, 0)
			}
			cont = false
			if m := literalRE.FindSubmatch(line); cc.proto == "imap" && m != nil {
				size, _ := strconv.ParseInt(string(m[1]), 10, 64)
				if _, err := io.CopyN(to, r, size); err != nil {
					return
				}
				cont = true
			}
		}
		if err != nil {
			return
		}
	}
}

type countWriter func(n int)

func (w countWriter) Write(p []byte) (int, error) { w(len(p)); return len(p), nil }

func (cc *connCounter) reset() {
	cc.mu.Lock()
	cc.c = connCounts{count: map[string]int64{}, up: map[string]int64{}, down: map[string]int64{}}
	cc.mu.Unlock()
}

func (cc *connCounter) snapshot() connCounts {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var out connCounts
	out.add(cc.c)
	return out
}

func resetAll(groups ...[]*connCounter) {
	for _, g := range groups {
		for _, c := range g {
			c.reset()
		}
	}
}

func sumConns(groups ...[]*connCounter) connCounts {
	var total connCounts
	for _, g := range groups {
		for _, c := range g {
			total.add(c.snapshot())
		}
	}
	return total
}
