package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Wait-open probing: one connection attempt at a time, each at most
// probeAttempt long, at least probeInterval apart.
const (
	probeAttempt  = time.Second
	probeInterval = 200 * time.Millisecond
	// DefaultWaitTimeout is how long WaitOpen probes by default.
	DefaultWaitTimeout = 10 * time.Second
)

// NotOpenError reports a port that did not accept a connection in time.
type NotOpenError struct {
	Dst      netip.AddrPort
	Waited   time.Duration
	Attempts int
	Refused  bool  // some attempt was refused (RST): reachable, but closed or rejected
	Last     error // the last attempt's error
}

func (e *NotOpenError) Error() string {
	how := "no answer"
	if e.Refused {
		how = "connection refused"
	}
	return fmt.Sprintf("%s did not open within %v (%d attempts, %s)", e.Dst, e.Waited.Round(time.Millisecond), e.Attempts, how)
}

func (e *NotOpenError) Unwrap() error { return e.Last }

// WaitOpen probes dst with TCP connection attempts until one succeeds or
// timeout passes, and returns how long it took. Attempts that time out or
// are refused are retried (the daemon may still be applying the rule);
// when none succeeds it returns a *NotOpenError. It stops early when ctx
// ends.
func WaitOpen(ctx context.Context, dst netip.AddrPort, timeout time.Duration) (time.Duration, error) {
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	start := time.Now()
	deadline := start.Add(timeout)
	ne := &NotOpenError{Dst: dst}
	d := net.Dialer{KeepAlive: -1}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		attemptStart := time.Now()
		actx, cancel := context.WithTimeout(ctx, min(left, probeAttempt))
		c, err := d.DialContext(actx, "tcp", dst.String())
		cancel()
		ne.Attempts++
		if err == nil {
			c.Close()
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return time.Since(start), ctx.Err()
		}
		ne.Last = err
		if isRefused(err) {
			ne.Refused = true
		}
		// Pace attempts that failed fast (refused, unreachable).
		if wait := min(probeInterval-time.Since(attemptStart), time.Until(deadline)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return time.Since(start), ctx.Err()
			case <-t.C:
			}
		}
	}
	ne.Waited = time.Since(start)
	return ne.Waited, ne
}
