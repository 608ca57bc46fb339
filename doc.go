// Package remora is a peer-to-peer messaging core for a circle of friends
// that needs no server anyone must run: services the circle already has
// (mail, Matrix, git, Mastodon, a synced folder) become encrypted rendezvous
// points and mailboxes, and peers connect directly over libp2p when they can.
//
// See README.md and docs/ for the picture; cmd/remora is the binary.
package remora
