//go:build windows

package main

import "os"

// signalExitCode: Windows processes always have an exit code.
func signalExitCode(*os.ProcessState) int { return exitFailure }
