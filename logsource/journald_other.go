//go:build !linux

package logsource

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
