package testbin

import "syscall"

// DieWithParent makes a child get SIGKILL when the test process dies
// without running its cleanups (a timeout panic, a kill), so no daemon
// outlives the suite.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
