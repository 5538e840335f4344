//go:build !linux

package netnstest

import (
	"fmt"
	"runtime"
)

// Do needs Linux network namespaces; elsewhere it fails, and the tests
// that call it skip through Require before they get here.
func Do(ns string, fn func() error) error {
	return fmt.Errorf("netnstest: network namespace %s: not supported on %s", ns, runtime.GOOS)
}
