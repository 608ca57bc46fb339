package main

import (
	"slices"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/imap"
	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/matrix"
	"github.com/remora-p2p/remora/sdk"
)

// builtins are the adapters served by `remora adapter NAME`.
var builtins = map[string]func() sdk.Adapter{
	"dir":      dir.New,
	"git":      git.New,
	"imap":     imap.New,
	"mastodon": mastodon.New,
	"matrix":   matrix.New,
}

func builtinNames() []string {
	var names []string
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
