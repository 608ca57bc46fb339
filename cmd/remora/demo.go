package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/identity"
)

func (a *app) demoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Three nodes that share only a folder find each other, talk, and deliver to one that was away",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo's folders (printed at the end)")
	return cmd
}

// demoNode is one of the demo's daemons.
type demoNode struct {
	name   string
	home   string
	cfg    *Config
	d      *daemon
	cancel context.CancelFunc
	done   chan error
}

type demo struct {
	out    io.Writer
	root   string
	shared string
	log    *slog.Logger
	nodes  map[string]*demoNode
	start  time.Time
}

func (dm *demo) say(format string, args ...any) {
	fmt.Fprintf(dm.out, "[%5.1fs] %s\n", time.Since(dm.start).Seconds(), fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, out io.Writer, keep bool) (err error) {
	root, err := os.MkdirTemp("", "remora-demo-")
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(root, "demo.log"))
	if err != nil {
		return err
	}
	dm := &demo{out: out, root: root, shared: filepath.Join(root, "shared-folder"), nodes: map[string]*demoNode{}, start: time.Now(),
		log: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	defer func() {
		for _, n := range dm.nodes {
			n.stop()
		}
		logf.Close()
		if err != nil || keep {
			fmt.Fprintf(out, "demo folders and debug log kept in %s\n", root)
		} else {
			os.RemoveAll(root)
		}
	}()
	if err := os.MkdirAll(dm.shared, 0o755); err != nil {
		return err
	}
	dm.say("Three friends — alice, bob and carol — each run remora in their own folder.")
	dm.say("The only thing they share is %s (think: a Syncthing folder).", dm.shared)
	dm.say("No server, no bootstrap node: the folder is their channel, run by the `dir` adapter as a subprocess.")
	for _, name := range []string{"alice", "bob", "carol"} {
		if err := dm.create(ctx, name); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
	}
	alice, bob, carol := dm.nodes["alice"], dm.nodes["bob"], dm.nodes["carol"]

	c, err := alice.d.node.NewCircle("demo")
	if err != nil {
		return err
	}
	dm.say("alice creates the circle %q and invites bob and carol (single-use invites; no circle key inside).", "demo")
	if err := dm.joinApproved(ctx, alice, bob, c.ID()); err != nil {
		return err
	}
	inv, err := alice.d.node.NewInvite(c.ID(), "folder", 10*time.Minute, true)
	if err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	_, code, err := carol.d.node.JoinCircle(jctx, inv.String())
	cancel()
	if err != nil {
		return fmt.Errorf("carol could not join: %w", err)
	}
	dm.say("carol scanned an in-person invite (remora invite --in-person) on alice's screen: pre-approved, she joined at once (safety code %s).", code)

	dm.say("Everyone publishes a signed, encrypted presence record to the folder and dials the others...")
	pairs := [][2]*demoNode{{alice, bob}, {alice, carol}, {bob, carol}}
	for _, p := range pairs {
		x, y := p[0], p[1]
		if err := dm.until(ctx, x.name+" and "+y.name+" connected directly", func() bool {
			return x.d.node.Transport().PathTo(y.d.node.ID()).Live() && y.d.node.Transport().PathTo(x.d.node.ID()).Live()
		}); err != nil {
			return err
		}
	}
	peers, _ := alice.d.node.Peers(ctx)
	for _, p := range peers {
		dm.say("alice → %-5s path %-6s found by %s", p.Name, p.Path, p.FoundBy)
	}

	if _, err := alice.d.node.Send(ctx, api.SendRequest{Text: "Hello circle, this is alice!"}); err != nil {
		return err
	}
	for _, n := range []*demoNode{bob, carol} {
		m, err := dm.await(ctx, n, "Hello circle, this is alice!")
		if err != nil {
			return err
		}
		dm.say("%s received %q from %s via %s", n.name, m.Text, m.FromName, m.Path)
	}
	if _, err := bob.d.node.Send(ctx, api.SendRequest{To: []string{"alice"}, Text: "Hi alice, bob here (just to you)"}); err != nil {
		return err
	}
	m, err := dm.await(ctx, alice, "Hi alice, bob here (just to you)")
	if err != nil {
		return err
	}
	dm.say("alice received %q (direct envelope, only she can open it) via %s", m.Text, m.Path)

	dm.say("carol goes offline.")
	carol.stop()
	const offline = "Carol, this waited for you in the shared folder"
	if _, err := alice.d.node.Send(ctx, api.SendRequest{To: []string{"carol"}, Text: offline}); err != nil {
		return err
	}
	if err := dm.until(ctx, "alice's message to carol stored in the folder", func() bool { return countFiles(filepath.Join(dm.shared, "log")) > 0 && alice.d.node.Posted() > 0 }); err != nil {
		return err
	}
	dm.say("alice's message for carol is sealed to carol's key and stored in the folder (%d envelope files there).", countFiles(filepath.Join(dm.shared, "log")))
	dm.say("carol comes back.")
	if err := dm.startNode(ctx, carol); err != nil {
		return err
	}
	m, err = dm.await(ctx, carol, offline)
	if err != nil {
		return err
	}
	dm.say("carol received %q via %s", m.Text, m.Path)
	// Give every other path (a live retry, the channel copy) time to land,
	// then check nothing arrived twice.
	time.Sleep(2 * time.Second)
	msgs, err := carol.d.node.Messages(ctx, 0, 100)
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, m := range msgs {
		count[m.Text]++
	}
	for text, n := range count {
		if n != 1 {
			return fmt.Errorf("carol sees %q %d times, want once", text, n)
		}
	}
	if count[offline] != 1 || count["Hello circle, this is alice!"] != 1 {
		return fmt.Errorf("carol's inbox is %v, want both messages once", count)
	}
	dm.say("Delivered exactly once: carol's inbox holds %d messages, each once.", len(msgs))
	dm.say("Demo complete. Next: `remora init`, `remora channel add`, `remora run` (see README.md).")
	return nil
}

// create makes a node's home (identity and config) and starts it.
func (dm *demo) create(ctx context.Context, name string) error {
	home := filepath.Join(dm.root, name)
	if _, err := identity.Open(filepath.Join(home, "keys"), identity.Options{}); err != nil {
		return err
	}
	n := &demoNode{name: name, home: home, cfg: &Config{
		Name:   name,
		Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels: []ChannelConfig{{Name: "folder", Adapter: "dir", ID: "folder",
			Config: map[string]any{"path": dm.shared, "poll_interval": "100ms"}}},
	}}
	if err := saveConfig(filepath.Join(home, "config.toml"), n.cfg); err != nil {
		return err
	}
	dm.nodes[name] = n
	if err := dm.startNode(ctx, n); err != nil {
		return err
	}
	dm.say("%-5s is up: peer %s", name, n.d.node.ID())
	return nil
}

func (dm *demo) startNode(ctx context.Context, n *demoNode) error {
	d, err := openDaemon(ctx, n.home, n.cfg, dm.log.With("node", n.name), daemonOptions{PresenceInterval: time.Second, BoardPoll: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	n.d, n.cancel, n.done = d, cancel, make(chan error, 1)
	go func() { n.done <- d.run(rctx) }()
	return nil
}

func (n *demoNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

// until polls cond for up to a minute.
func (dm *demo) until(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("gave up waiting for %s (see %s)", what, filepath.Join(dm.root, "demo.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// await waits until n's inbox holds text.
func (dm *demo) await(ctx context.Context, n *demoNode, text string) (api.Message, error) {
	var found api.Message
	err := dm.until(ctx, n.name+" receiving "+fmt.Sprintf("%q", text), func() bool {
		msgs, err := n.d.node.Messages(ctx, 0, 1000)
		if err != nil {
			return false
		}
		for _, m := range msgs {
			if m.Text == text {
				found = m
				return true
			}
		}
		return false
	})
	return found, err
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// joinApproved runs the default join: the joiner's request waits until the
// inviter, having compared the safety code, approves it.
func (dm *demo) joinApproved(ctx context.Context, inviter, joiner *demoNode, id circle.ID) error {
	inv, err := inviter.d.node.NewInvite(id, "folder", 10*time.Minute, false)
	if err != nil {
		return err
	}
	st, err := joiner.d.node.Join(ctx, api.JoinRequest{Invite: inv.String()})
	if err != nil {
		return fmt.Errorf("%s could not ask to join: %w", joiner.name, err)
	}
	dm.say("%s asks to join through the folder; the request waits for an admin. %s reads the safety code aloud: %s", joiner.name, joiner.name, st.SafetyCode)
	var pending []api.PendingJoin
	if err := dm.until(ctx, inviter.name+" sees the request", func() bool {
		pending, _ = inviter.d.node.Pending(ctx, "")
		return len(pending) > 0
	}); err != nil {
		return err
	}
	if pending[0].SafetyCode != st.SafetyCode {
		return fmt.Errorf("safety codes differ: %s shows %s, %s shows %s", inviter.name, pending[0].SafetyCode, joiner.name, st.SafetyCode)
	}
	dm.say("%s runs `remora circle pending`: %s, safety code %s — the same, so %s approves.", inviter.name, pending[0].Name, pending[0].SafetyCode, inviter.name)
	if _, err := inviter.d.node.Approve(ctx, api.MemberRequest{Who: pending[0].PeerID}); err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err = joiner.d.node.JoinStatus(jctx, st.ID, 60*time.Second)
	if err != nil || st.State != "joined" {
		return fmt.Errorf("%s could not join: %v %s", joiner.name, err, st.Error)
	}
	dm.say("%s joined: only now did the circle's keys and roster reach it.", joiner.name)
	return nil
}
