package rules

import "syscall"

// groupAttr puts a firewall command in its own process group (so that a
// timeout kills everything it started) and has the kernel SIGKILL it when
// the daemon dies. A process group shields the child from a signal to the
// daemon's group; without the parent-death signal a command the daemon
// started just before a kill -9 would go on and change the firewall after
// the daemon is gone, possibly after its successor has reconciled the
// firewall with its state file: an opening nobody knows of. Killed with
// the daemon, the command has either committed (the successor reconciles
// it) or changed nothing (iptables, nft and ipset apply each command
// atomically). The daemon locks no goroutine to an OS thread, so the
// thread that started a child lives as long as the daemon.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
