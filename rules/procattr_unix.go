//go:build unix && !linux

package rules

import "syscall"

// groupAttr puts a firewall command in its own process group, so that a
// timeout kills everything it started. (Only Linux has a parent-death
// signal; see procattr_linux.go.)
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
