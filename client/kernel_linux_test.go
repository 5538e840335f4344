//go:build linux

package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// kmsgReader follows /dev/kmsg from the moment it is opened.
type kmsgReader struct{ fd int }

func openKmsg(t *testing.T) *kmsgReader {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		netnstest.Unavailable(t, "cannot read /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	return &kmsgReader{fd: fd}
}

// lines returns the messages containing prefix that appear until deadline.
func (k *kmsgReader) lines(prefix string, deadline time.Time) []string {
	var out []string
	buf := make([]byte, 8192)
	for time.Now().Before(deadline) {
		n, err := unix.Read(k.fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			time.Sleep(10 * time.Millisecond)
			continue
		case errors.Is(err, unix.EPIPE): // records overwritten; keep going
			continue
		case err != nil || n == 0:
			return out
		}
		rec := buf[:n]
		if i := bytes.IndexByte(rec, ';'); i >= 0 {
			msg := string(bytes.TrimRight(rec[i+1:], "\n"))
			if strings.Contains(msg, prefix) {
				out = append(out, msg)
			}
		}
	}
	return out
}

var (
	dptRe = regexp.MustCompile(` DPT=(\d+)`)
	sptRe = regexp.MustCompile(` SPT=(\d+)`)
)

// TestSendKernelLog sends knocks from a client namespace to a server
// namespace whose firewall logs and drops the knock ports, and reads the
// kernel log: exactly eight hits, in order, each from a new source port,
// and no SYN retransmission (the TCP attempts are abandoned in time; the
// log is watched for 1.6 s, past the kernel's 1 s retransmission timer).
func TestSendKernelLog(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables")
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	offsets := [8]uint16{5, 5, 0, 255, 17, 200, 17, 3}
	cases := []struct {
		name string
		udp  bool
		v6   bool
		base uint16
		gap  time.Duration
	}{
		{"tcp4", false, false, 745, 0},
		{"udp4", true, false, 2000, 0},
		{"tcp6", false, true, 3000, 0},
		{"udp6", true, true, 4000, 0},
		// The shortest gap: every attempt is abandoned after 1 ms, and
		// each SYN must still leave (the abandon timer starts only once
		// the socket exists).
		{"tcp4 1ms gap", false, false, 5000, MinGap},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "kc" + netnstest.RandHex(4) + ": "
			ipt, dst := "iptables", n.Client.ServerIP4
			if tc.v6 {
				ipt, dst = "ip6tables", n.Client.ServerIP6
			}
			proto := "tcp"
			if tc.udp {
				proto = "udp"
			}
			rng := fmt.Sprintf("%d:%d", tc.base, tc.base+255)
			netnstest.MustExec(t, n.Server, ipt, "-w", "-A", "INPUT", "-p", proto, "--dport", rng,
				"-j", "LOG", "--log-prefix", prefix)
			netnstest.MustExec(t, n.Server, ipt, "-w", "-A", "INPUT", "-p", proto, "--dport", rng, "-j", "DROP")
			var ports [8]uint16
			for i, o := range offsets {
				ports[i] = tc.base + o
			}
			k := openKmsg(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := netnstest.Do(n.Client.NS, func() error {
				return Send(ctx, dst, ports, SendOptions{UDP: tc.udp, Gap: tc.gap})
			})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			lines := k.lines(prefix, time.Now().Add(1600*time.Millisecond))
			if len(lines) != 8 {
				t.Fatalf("%d log lines, want exactly 8:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			var prevSPT string
			for i, l := range lines {
				m := dptRe.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("no DPT in %q", l)
				}
				if p, _ := strconv.Atoi(m[1]); uint16(p) != ports[i] {
					t.Fatalf("hit %d on port %d, want %d; log:\n%s", i+1, p, ports[i], strings.Join(lines, "\n"))
				}
				if !strings.Contains(l, "SRC="+expandedAddr(n.Client, tc.v6)) {
					t.Fatalf("hit %d from the wrong source: %q", i+1, l)
				}
				spt := sptRe.FindStringSubmatch(l)
				if spt == nil || spt[1] == prevSPT {
					t.Fatalf("hit %d repeats the previous source port: %q", i+1, l)
				}
				prevSPT = spt[1]
			}
		})
	}
}

// expandedAddr is the client's address as the LOG target prints it
// (IPv6 fully expanded).
func expandedAddr(p *netnstest.Peer, v6 bool) string {
	if !v6 {
		return p.IP4.String()
	}
	return expand6(p.IP6)
}

func expand6(a netip.Addr) string {
	b := a.As16()
	var parts []string
	for i := 0; i < 16; i += 2 {
		parts = append(parts, fmt.Sprintf("%04x", uint16(b[i])<<8|uint16(b[i+1])))
	}
	return strings.Join(parts, ":")
}
