// Package discovery finds peers. Each way of finding them is a box
// (source): LAN mDNS, the persisted peer cache, peer exchange, every
// channel, the board boxes (static web file, DNS TXT), and last the signed
// list of volunteer relays. Discovery runs the boxes that are Sources,
// takes reports from the others, and keeps the per-box report `remora
// doctor` prints: configured, last attempt, last success, members found,
// and the fix when a box fails or is off. docs/discovery.md describes the
// boxes and the order the node uses them in.
package discovery
