package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/matrix"
	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/testenv"
)

// The channels the daemon tests give their members, one way each, so that
// the tests differ only in what they test.

// addFolderChannel adds channel "folder": the dir adapter on path, polled
// every 100 ms.
func addFolderChannel(h *home, path string) {
	h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+path, "--set", "poll_interval=100ms")
}

// newGitRepo makes the bare repository name.git under root, the folder a
// git daemon serves at daemonURL, and returns its URL.
func newGitRepo(t testing.TB, root, daemonURL, name string) string {
	t.Helper()
	if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(root, name+".git")).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	return daemonURL + "/" + name + ".git"
}

// addGitChannel adds channel "repo" on remote, flushed and polled often
// enough for a test.
func addGitChannel(h *home, remote string) {
	h.ok("channel", "add", "repo", "--adapter", "git", "--set", "remote="+remote,
		"--set", "flush_interval=200ms", "--set", "poll_min=500ms", "--set", "poll_max=2s")
}

// addMailListChannel adds channel "mail": account acct (alice, bob or
// carol) of a private mail system, a member of its mlmmj list.
func addMailListChannel(t testing.TB, h *home, mail *testenv.Private, acct string) {
	t.Helper()
	h.ok("channel", "add", "mail", "--adapter", "imap", "--set", "mode=list", "--set", "imap="+mail.Get("REMORA_MAIL_IMAP"),
		"--set", "smtp="+mail.Get("REMORA_MAIL_SUBMISSION"), "--set", "ca_file="+mail.Get("REMORA_MAIL_CA"),
		"--set", "username="+acct, "--set", "address="+acct+"@"+mail.Get("REMORA_MAIL_DOMAIN"),
		"--set", "list_address="+mail.Get("REMORA_MAIL_LIST"),
		"--secret", "password=file:"+writeSecret(t, h, "mail.pw", acct+mail.Get("REMORA_MAIL_PASSWORD_SUFFIX")))
}

// matrixRoom is a room on a homeserver with one user per member, in which
// every member may write boards.
type matrixRoom struct {
	hs    matrixtest.Homeserver
	users []matrixtest.User
	room  id.RoomID
}

// newMatrixRoom registers members users on the homeserver at url (its
// registration secret given) and makes the room name with all of them in it.
func newMatrixRoom(t testing.TB, url, secret string, members int, name string) matrixRoom {
	t.Helper()
	r := matrixRoom{hs: matrixtest.Homeserver{URL: url, Secret: secret}}
	for range members {
		r.users = append(r.users, r.hs.Register(t))
	}
	r.room = matrixtest.CreateRoom(t, r.users[0], name, r.users[1:], nil)
	matrixtest.SetStateLevel(t, r.users[0], r.room, matrix.BoardType(string(r.room)), 0)
	return r
}

// add adds channel "room" for member i (extra: more `channel add` flags).
func (r matrixRoom) add(t testing.TB, h *home, i int, extra ...string) {
	t.Helper()
	args := append([]string{"channel", "add", "room", "--adapter", "matrix"}, extra...)
	h.ok(append(args, "--set", "homeserver="+r.hs.URL, "--set", "user="+string(r.users[i].ID), "--set", "room="+string(r.room),
		"--secret", "password=file:"+writeSecret(t, h, "matrix.pw", r.users[i].Password))...)
}
