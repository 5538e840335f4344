//go:build unix

package rules

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup starts the command in its own process group and makes
// context cancellation kill the whole group, not only the direct child.
// Where the system can, the child also dies with the daemon (see
// groupAttr).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = groupAttr()
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// A negative pid signals the process group (kill(2)).
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
}

// startInGroup makes a long-lived command the leader of its own process
// group, so that killProcessGroup reaches every process it started.
func startInGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = groupAttr()
}

// killProcessGroup kills the process group led by p (see startInGroup),
// or p alone when that fails.
func killProcessGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}
