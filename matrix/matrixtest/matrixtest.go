// Package matrixtest makes accounts and rooms on a homeserver with
// shared-secret registration (the Dendrite that testenv starts) for
// integration tests of the matrix adapter and of the commands that use it.
package matrixtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"
)

// Homeserver is a homeserver with shared-secret registration (testenv's
// REMORA_MATRIX_URL and REMORA_MATRIX_SECRET).
type Homeserver struct {
	URL, Secret string
}

// User is an account made for one test, with its own logged-in client.
type User struct {
	ID       id.UserID
	Password string
	Client   *mautrix.Client
}

// RandomName is prefix and 12 random hex digits.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Register makes a fresh user with shared-secret registration, retrying
// while the homeserver rate-limits.
func (hs Homeserver) Register(t testing.TB) User {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := RandomName("u")
	pw := "pw-" + RandomName("")
	cli, err := mautrix.NewClient(hs.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cli.DefaultHTTPRetries = 5
	cli.DefaultHTTPBackoff = 200 * time.Millisecond
	admin := synapseadmin.Client{Client: cli}
	var resp *mautrix.RespRegister
	for {
		resp, err = admin.SharedSecretRegister(ctx, hs.Secret, synapseadmin.ReqSharedSecretRegister{Username: name, Password: pw})
		var he mautrix.HTTPError
		if errors.As(err, &he) && he.RespError != nil && he.RespError.ErrCode == "M_LIMIT_EXCEEDED" {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return User{ID: resp.UserID, Password: pw, Client: cli}
}

// CreateRoom makes a private room named name owned by u, inviting others.
// powerOverride, if set, replaces the default power levels.
func CreateRoom(t testing.TB, u User, name string, others []User, powerOverride *event.PowerLevelsEventContent) id.RoomID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Name: name, PowerLevelOverride: powerOverride}
	for _, o := range others {
		req.Invite = append(req.Invite, o.ID)
	}
	resp, err := u.Client.CreateRoom(ctx, req)
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	return resp.RoomID
}

// SetStateLevel sets the power level room requires for state events of
// type typ, keeping the other power levels.
func SetStateLevel(t testing.TB, u User, room id.RoomID, typ string, level int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pl event.PowerLevelsEventContent
	if err := u.Client.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatalf("read power levels of %s: %v", room, err)
	}
	if pl.Events == nil {
		pl.Events = map[string]int{}
	}
	pl.Events[typ] = level
	if _, err := u.Client.SendStateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatalf("set power levels of %s: %v", room, err)
	}
}
