//go:build !linux

package logsource

import (
	"context"
	"fmt"
	"runtime"
)

func kmsgUsable(path string) error {
	return fmt.Errorf("%s is not supported on %s", path, runtime.GOOS)
}

func monotonicMicros() (int64, bool) { return 0, false }

// Run fails: /dev/kmsg is Linux only.
func (k *Kmsg) Run(ctx context.Context, emit func(Line)) error {
	return fmt.Errorf("logsource: %s is not supported on %s; use a log file (FreeBSD: /var/log/security)", k.path, runtime.GOOS)
}

// DefaultLogFiles: FreeBSD's syslogd puts ipfw logging in security.
var DefaultLogFiles = []string{"/var/log/security", "/var/log/messages"}
