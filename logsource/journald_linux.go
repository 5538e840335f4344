package logsource

import "syscall"

// childAttr kills the child when the daemon dies, so a crashed daemon
// leaves no journalctl behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
