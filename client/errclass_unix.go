//go:build !windows

package client

import (
	"errors"
	"syscall"
)

// localFailure reports whether a connect or send error means the packet
// never left this host.
func localFailure(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENETUNREACH, syscall.EACCES, syscall.EPERM,
		syscall.EADDRNOTAVAIL, syscall.EAFNOSUPPORT, syscall.ENETDOWN, syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isRefused reports a connection refused by the peer (a RST).
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
