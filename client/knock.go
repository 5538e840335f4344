// Package client is the sending side of knock protocol v1
// (docs/PROTOCOL.md): resolving the target, sending the eight knocks with
// ordinary unprivileged sockets, waiting for the opened port, and the
// knockclient profile file. The knockclient command is a thin layer on it.
//
// Nothing here needs raw sockets or root, and nothing is Linux-only:
// platform differences live in files split by build tag.
package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// Gap limits and default (docs/PROTOCOL.md §4).
const (
	DefaultGap = 15 * time.Millisecond
	MinGap     = 1 * time.Millisecond
	// MaxGap keeps a whole sequence (7 gaps) well inside the daemon's
	// default sequence timeout of 10 s.
	MaxGap = time.Second
	// maxAttempt is the longest a TCP knock's connection attempt may stay
	// open: the kernel retransmits an unanswered SYN after about one
	// second, and a retransmission would land in the sequence.
	maxAttempt = 500 * time.Millisecond
)

// SendOptions control how knocks are sent.
type SendOptions struct {
	// UDP sends one empty UDP datagram per knock instead of a TCP
	// connection attempt.
	UDP bool
	// Gap is the time from one knock to the next (DefaultGap when 0).
	Gap time.Duration
	// OnKnock, when not nil, is called after each knock is sent, with its
	// index (0..7) and destination port.
	OnKnock func(i int, port uint16)
}

// KnockError reports a knock that could not be sent.
type KnockError struct {
	Index int // 0..7
	Dst   netip.AddrPort
	Proto string
	Err   error
}

func (e *KnockError) Error() string {
	return fmt.Sprintf("knock %d (%s %s): %v", e.Index+1, e.Proto, e.Dst, e.Err)
}

func (e *KnockError) Unwrap() error { return e.Err }

// CheckGap returns an error unless MinGap <= gap <= MaxGap.
func CheckGap(gap time.Duration) error {
	if gap < MinGap || gap > MaxGap {
		return fmt.Errorf("delay %v out of range %v..%v", gap, MinGap, MaxGap)
	}
	return nil
}

// Send sends the eight knocks to dst in order, one every opt.Gap.
//
// A TCP knock is an ordinary non-blocking connect abandoned after the gap
// (at most 500 ms, before the kernel would retransmit the SYN); whether the
// port accepts, refuses or stays silent, the rest of the gap is waited out
// so that knocks stay evenly paced. A UDP knock is one empty datagram from
// a fresh socket; the previous knock's socket stays open until the next
// one exists, so consecutive knocks never share a source port (the daemon
// would take a repeated source and destination port for a retransmission).
//
// Send fails on errors that mean the packet never left this host (no
// route, blocked by the local firewall, no such address family) and when
// ctx ends.
func Send(ctx context.Context, dst netip.Addr, ports [8]uint16, opt SendOptions) error {
	gap := opt.Gap
	if gap == 0 {
		gap = DefaultGap
	}
	if err := CheckGap(gap); err != nil {
		return err
	}
	if !dst.IsValid() || dst.IsUnspecified() {
		return fmt.Errorf("invalid knock destination %v", dst)
	}
	dst = dst.Unmap()
	var prev net.Conn
	defer func() {
		if prev != nil {
			prev.Close()
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for i, port := range ports {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		ap := netip.AddrPortFrom(dst, port)
		var err error
		if opt.UDP {
			var c net.Conn
			c, err = knockUDP(ap)
			if prev != nil {
				prev.Close()
			}
			prev = c
		} else {
			err = knockTCP(ctx, ap, min(gap, maxAttempt))
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			proto := "tcp"
			if opt.UDP {
				proto = "udp"
			}
			return &KnockError{Index: i, Dst: ap, Proto: proto, Err: err}
		}
		if opt.OnKnock != nil {
			opt.OnKnock(i, port)
		}
		// Wait out the rest of the gap, after the last knock too: the
		// daemon should see the sequence complete before anything else
		// (a --wait-open probe) arrives.
		if rest := gap - time.Since(start); rest > 0 {
			timer.Reset(rest)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		}
	}
	return nil
}

// knockTCP makes one connection attempt and abandons it after timeout.
// Only errors meaning the SYN never left are returned.
//
// The timeout starts inside the dialer's Control hook, right before
// connect(2): a context deadline set earlier could expire on a loaded
// machine before the socket exists, and the dialer would then give up
// without sending the SYN at all.
func knockTCP(ctx context.Context, ap netip.AddrPort, timeout time.Duration) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timer *time.Timer
	var abandoned atomic.Bool
	d := net.Dialer{
		KeepAlive: -1,
		ControlContext: func(context.Context, string, string, syscall.RawConn) error {
			timer = time.AfterFunc(timeout, func() {
				abandoned.Store(true)
				cancel()
			})
			return nil
		},
	}
	c, err := d.DialContext(actx, "tcp", ap.String())
	if timer != nil {
		timer.Stop()
	}
	if err == nil {
		return c.Close() // the port is open; the SYN was a knock all the same
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if timer == nil {
		return err // failed before connect(2): nothing was sent
	}
	if abandoned.Load() || !localFailure(err) {
		return nil // unanswered, refused, or an ICMP error: the SYN went out
	}
	return err
}

// knockUDP sends one empty datagram from a new socket and returns that
// socket, which the caller closes.
func knockUDP(ap netip.AddrPort) (net.Conn, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(nil); err != nil && localFailure(err) {
		c.Close()
		return nil, err
	}
	return c, nil
}
