//go:build !linux

package main

import "syscall"

// isolatedNet: network namespaces are Linux's; elsewhere the daemon runs in
// the host's network.
func isolatedNet() *syscall.SysProcAttr { return nil }
