//go:build !unix

package rules

import (
	"os"
	"os/exec"
)

// setProcessGroup is a no-op where process groups do not exist; context
// cancellation then kills only the direct child.
func setProcessGroup(cmd *exec.Cmd) {}

// startInGroup is a no-op where process groups do not exist.
func startInGroup(cmd *exec.Cmd) {}

// killProcessGroup kills p alone where process groups do not exist.
func killProcessGroup(p *os.Process) { _ = p.Kill() }
