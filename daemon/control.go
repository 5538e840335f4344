package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/knockdaemon/knock/door"
	"github.com/knockdaemon/knock/grant"
)

// The control socket speaks JSON lines: one Request per line, one Response
// per line, in order. It is a unix socket of mode 0600, so only root (the
// daemon's user) can talk to it.

// Request is one control command.
type Request struct {
	Cmd  string `json:"cmd"`            // "status" or "revoke"
	Addr string `json:"addr,omitempty"` // revoke: the address
	Port uint16 `json:"port,omitempty"` // revoke: the port; 0 = every port of addr
}

// Response answers one Request.
type Response struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Status  *Status  `json:"status,omitempty"`
	Revoked []string `json:"revoked,omitempty"` // "ADDR PROTO/PORT" of each closed opening
	Failed  []string `json:"failed,omitempty"`  // closes that failed and are being retried
}

// Status is what `knockdaemon status` shows.
type Status struct {
	From     string        `json:"from"` // "daemon" or "state file"
	Now      time.Time     `json:"now"`
	Started  time.Time     `json:"started,omitzero"`
	Source   string        `json:"source,omitempty"`
	Backend  string        `json:"backend,omitempty"`
	Grants   []GrantStatus `json:"grants"`
	Counters *Counters     `json:"counters,omitempty"`
	// Doors are the knockd-style doors' counters, when doors are
	// configured, and their stop commands still to run.
	Doors       *door.Stats    `json:"doors,omitempty"`
	DoorPending []door.Pending `json:"door_pending,omitempty"`
	Replay      int            `json:"replay_entries"`
	// StateWriteFailing is set while the state file cannot be written.
	StateWriteFailing bool `json:"state_write_failing,omitempty"`
}

// GrantStatus is one grant with its remaining time.
type GrantStatus struct {
	Addr      string    `json:"addr"`
	Proto     string    `json:"proto"`
	Port      uint16    `json:"port"`
	User      string    `json:"user,omitempty"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires,omitzero"` // zero: unlimited
	Remaining int64     `json:"remaining_seconds"`
	Unlimited bool      `json:"unlimited,omitempty"`
	Attempts  int       `json:"close_attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

// Counters are the pipeline's statistics since start.
type Counters struct {
	Lines      uint64            `json:"lines"`
	Firewall   uint64            `json:"firewall_lines"`
	Malformed  uint64            `json:"malformed"`
	Hits       uint64            `json:"hits"`
	Candidates uint64            `json:"candidates"`
	Accepted   uint64            `json:"accepted"`
	Rejected   map[string]uint64 `json:"rejected"`
	Lockouts   uint64            `json:"lockouts"`
	Opened     uint64            `json:"opened"`
	Extended   uint64            `json:"extended"`
	Closed     uint64            `json:"closed"`
	OpenFailed uint64            `json:"open_failed"`
	Sources    int               `json:"sources_tracked"`
	LockedOut  int               `json:"sources_locked_out"`
}

// ErrNotRunning reports that no daemon answers on the control socket.
var ErrNotRunning = errors.New("knockdaemon is not running")

// Status returns the daemon's status.
func (d *Daemon) Status() Status {
	now := d.clk.Now()
	st := Status{From: "daemon", Now: now, Started: d.started, Source: d.source.String(),
		Backend: d.backend.Name(), Replay: d.replay.Len(), StateWriteFailing: d.stateBroken.Load()}
	for _, g := range d.grants.List() {
		st.Grants = append(st.Grants, grantStatus(g.Grant, g.Remaining, g.Attempts, g.LastError))
	}
	c := &Counters{Rejected: map[string]uint64{}}
	c.Lines, c.Firewall, c.Malformed = d.ctr.lines.Load(), d.ctr.firewall.Load(), d.ctr.malformed.Load()
	c.Hits, c.Candidates, c.Accepted = d.ctr.hits.Load(), d.ctr.candidates.Load(), d.ctr.accepted.Load()
	c.Lockouts, c.Opened, c.Extended = d.ctr.lockouts.Load(), d.ctr.opened.Load(), d.ctr.extended.Load()
	c.Closed, c.OpenFailed = d.ctr.closed.Load(), d.ctr.openFailed.Load()
	for i := range d.ctr.rejected {
		c.Rejected[reasonNames[i]] = d.ctr.rejected[i].Load()
	}
	as := d.asm.Stats()
	c.Sources, c.LockedOut = as.Sources, as.LockedOut
	// Knocks from a locked-out source are dropped by the assembler, one
	// by one and without a log line each (the lockout event was logged).
	c.Rejected[reasonNames[rLockout]] = as.LockedOutHits
	st.Counters = c
	if d.doors != nil {
		ds := d.doors.Stats()
		st.Doors = &ds
		st.DoorPending = d.doors.Pending()
	}
	return st
}

func grantStatus(g grant.Grant, remaining time.Duration, attempts int, lastErr string) GrantStatus {
	return GrantStatus{Addr: g.Addr.String(), Proto: g.Proto, Port: g.Port, User: g.User, State: string(g.State),
		Created: g.Created, Expires: g.Expires, Remaining: int64(remaining / time.Second), Unlimited: g.Unlimited(),
		Attempts: attempts, LastError: lastErr}
}

// StatusFromState builds a status from a state file, for when the daemon
// is not running.
func StatusFromState(st State, now time.Time) Status {
	s := Status{From: "state file", Now: now, Grants: []GrantStatus{}}
	for _, g := range st.Grants {
		var rem time.Duration
		if g.State == grant.StateOpen && g.Expires.After(now) {
			rem = (g.Expires.Sub(now) + time.Second - 1) / time.Second * time.Second
		}
		s.Grants = append(s.Grants, grantStatus(g, rem, 0, ""))
	}
	s.DoorPending = st.DoorPending
	for _, r := range st.Replay {
		if !now.After(r.Until) {
			s.Replay++
		}
	}
	return s
}

// Revoke closes the openings of addr (on port, or every port when port is
// 0) now.
func (d *Daemon) Revoke(ctx context.Context, addr netip.Addr, port uint16) (revoked, failed []string) {
	addr = addr.Unmap()
	for _, g := range d.grants.List() {
		if g.Addr != addr || (port != 0 && g.Port != port) {
			continue
		}
		k := g.Key()
		ev, _ := d.grants.Close(ctx, k) // a failure is logged by grant.Manager, which retries
		switch ev {
		case grant.Closed:
			d.ctr.closed.Add(1)
			revoked = append(revoked, k.String())
			d.log.Info("opening closed", "event", "closed", "reason", "revoke", "addr", k.Addr, "proto", k.Proto, "port", k.Port, "user", g.User)
		case grant.NotFound:
		default:
			failed = append(failed, k.String())
			// grant.Manager has logged event=close_failed and retries.
		}
	}
	return revoked, failed
}

// listenControl listens on the control socket at path. A stale socket
// (nobody answers) is replaced; a live one means another daemon runs.
func listenControl(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s exists and is not a socket; remove it or set daemon.control_socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another knockdaemon is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: removing the stale %s: %w", path, err)
		}
	}
	// Create it with no access for group and others from the start.
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

const maxControlLine = 4096

func (d *Daemon) serveControl(ctx context.Context, l *net.UnixListener) {
	var wg sync.WaitGroup
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("control socket failed", "err", err)
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.serveConn(ctx, c)
		}()
	}
	wg.Wait()
}

func (d *Daemon) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, maxControlLine)
	enc := json.NewEncoder(c)
	for n := 0; n < 64; n++ {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				_ = enc.Encode(Response{Error: "request too long"})
			}
			return
		}
		_ = enc.Encode(d.handleControl(ctx, line))
	}
}

func (d *Daemon) handleControl(ctx context.Context, line []byte) Response {
	var req Request
	dec := json.NewDecoder(bytesReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Response{Error: "bad request: " + err.Error()}
	}
	switch req.Cmd {
	case "status":
		st := d.Status()
		return Response{OK: true, Status: &st}
	case "revoke":
		a, err := netip.ParseAddr(req.Addr)
		if err != nil || a.Zone() != "" {
			return Response{Error: fmt.Sprintf("revoke: %q is not an IP address", req.Addr)}
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		rev, failed := d.Revoke(rctx, a, req.Port)
		resp := Response{OK: len(failed) == 0, Revoked: rev, Failed: failed}
		if len(failed) > 0 {
			resp.Error = "some closes failed; the daemon keeps retrying them"
		}
		return resp
	}
	return Response{Error: fmt.Sprintf("unknown command %q (want status or revoke)", req.Cmd)}
}

// Call sends one request to the daemon's control socket at path. It
// returns an error matching ErrNotRunning when nobody listens there.
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w (no one listens on %s)", ErrNotRunning, path)
		}
		return Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: reading the answer: %w", path, err)
	}
	if !resp.OK && resp.Error != "" && len(resp.Revoked) == 0 && len(resp.Failed) == 0 {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// SortGrants orders grants by address, protocol and port.
func SortGrants(gs []GrantStatus) {
	sort.Slice(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.Addr != b.Addr {
			return a.Addr < b.Addr
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		return a.Port < b.Port
	})
}
