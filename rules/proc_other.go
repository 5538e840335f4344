//go:build !unix

package rules

import "os/exec"

// setProcessGroup is a no-op where process groups do not exist; context
// cancellation then kills only the direct child.
func setProcessGroup(cmd *exec.Cmd) {}
