//go:build !linux

package main

import (
	"syscall"
	"testing"
)

// isolatedNet: network namespaces are Linux's; elsewhere the daemon runs in
// the host's network.
func isolatedNet() *syscall.SysProcAttr { return nil }

func testMDNSAlone(t *testing.T) { t.Skip("the mDNS box test needs Linux network namespaces") }
