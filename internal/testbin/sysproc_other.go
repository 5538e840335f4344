//go:build !linux

package testbin

import "syscall"

// DieWithParent: only Linux has a parent-death signal; elsewhere the
// child is left to the cleanups.
func DieWithParent() *syscall.SysProcAttr { return nil }
