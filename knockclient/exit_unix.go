//go:build !windows

package main

import (
	"os"
	"syscall"
)

// signalExitCode is 128 + the signal for a process killed by a signal,
// as shells report it.
func signalExitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exitFailure
}
