//go:build windows

package client

import (
	"errors"
	"syscall"
)

// Winsock error numbers for failures that mean nothing was sent.
const (
	wsaeacces        = syscall.Errno(10013)
	wsaemfile        = syscall.Errno(10024)
	wsaeafnosupport  = syscall.Errno(10047)
	wsaeaddrnotavail = syscall.Errno(10049)
	wsaenetdown      = syscall.Errno(10050)
	wsaenetunreach   = syscall.Errno(10051)
	wsaenobufs       = syscall.Errno(10055)
)

// localFailure reports whether a connect or send error means the packet
// never left this host.
func localFailure(err error) bool {
	for _, e := range []syscall.Errno{wsaeacces, wsaemfile, wsaeafnosupport, wsaeaddrnotavail,
		wsaenetdown, wsaenetunreach, wsaenobufs} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isRefused reports a connection refused by the peer (a RST).
func isRefused(err error) bool {
	return errors.Is(err, syscall.Errno(10061)) || errors.Is(err, syscall.ECONNREFUSED) // WSAECONNREFUSED
}
