//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/netnstest"
)

// kmsgFollow opens /dev/kmsg at its end and returns a function that
// collects the messages containing prefix until the deadline.
func kmsgFollow(t *testing.T) func(prefix string, deadline time.Time) []string {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		netnstest.Unavailable(t, "cannot read /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	return func(prefix string, deadline time.Time) []string {
		var out []string
		buf := make([]byte, 8192)
		for time.Now().Before(deadline) {
			n, err := unix.Read(fd, buf)
			switch {
			case errors.Is(err, unix.EAGAIN):
				time.Sleep(10 * time.Millisecond)
				continue
			case errors.Is(err, unix.EPIPE):
				continue
			case err != nil || n == 0:
				return out
			}
			if i := bytes.IndexByte(buf[:n], ';'); i >= 0 {
				if msg := string(bytes.TrimRight(buf[i+1:n], "\n")); strings.Contains(msg, prefix) {
					out = append(out, msg)
				}
			}
		}
		return out
	}
}

var dptRe = regexp.MustCompile(` DPT=(\d+)`)

// TestKnockAsNobody runs the knockclient binary as user nobody (no
// capabilities) inside a client namespace and checks, in the server
// namespace's firewall log, that the eight knocks of the request arrive in
// order, for TCP and UDP.
func TestKnockAsNobody(t *testing.T) {
	netnstest.Require(t, "iptables", "setpriv")
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	bin := buildSelf(t)
	keyDir := filepath.Dir(bin)
	keyPath := filepath.Join(keyDir, "nobody.key")
	if err := os.WriteFile(keyPath, []byte(keyA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(keyPath, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	secret, err := cipher.ParseKey([]byte(keyA))
	if err != nil {
		t.Fatal(err)
	}
	// Static mode: the expected ports do not depend on the clock.
	want, err := cipher.Encode(cipher.Key{Secret: secret, Mode: cipher.Static}, cipher.Request{Port: 22, Time: 10}, time.Now(), cipher.DefaultBase)
	if err != nil {
		t.Fatal(err)
	}
	asNobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}
	if out := netnstest.MustExec(t, n.Client.NS, append(asNobody, "id", "-u")...); strings.TrimSpace(out) != "65534" {
		t.Fatalf("setpriv did not drop to nobody: id -u = %q", out)
	}
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			prefix := "kn" + netnstest.RandHex(4) + ": "
			netnstest.MustExec(t, n.Server, "iptables", "-w", "-A", "INPUT", "-p", proto, "--dport", "745:1000", "-j", "LOG", "--log-prefix", prefix)
			netnstest.MustExec(t, n.Server, "iptables", "-w", "-A", "INPUT", "-p", proto, "--dport", "745:1000", "-j", "DROP")
			follow := kmsgFollow(t)
			argv := append(append([]string{}, asNobody...), "env", "-i", "KNOCKCLIENT_TEST_MAIN=1", "HOME=/nonexistent",
				bin, "knock", n.Client.ServerIP4.String(), "--port", "22", "--time", "10", "--static", "--key-file", keyPath, "-v")
			if proto == "udp" {
				argv = append(argv, "--udp")
			}
			out, err := netnstest.Exec(n.Client.NS, argv...)
			if err != nil {
				t.Fatalf("knockclient as nobody: %v", err)
			}
			if !strings.Contains(out, "knock 8/8 "+proto) {
				t.Fatalf("unexpected output: %s", out)
			}
			lines := follow(prefix, time.Now().Add(1500*time.Millisecond))
			if len(lines) != 8 {
				t.Fatalf("%d log lines, want 8:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			for i, l := range lines {
				m := dptRe.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("no DPT in %q", l)
				}
				if p, _ := strconv.Atoi(m[1]); uint16(p) != want[i] {
					t.Fatalf("knock %d hit port %d, want %d (sequence %v)", i+1, p, want[i], want)
				}
				if !strings.Contains(l, "SRC="+n.Client.IP4.String()+" ") {
					t.Fatalf("knock %d from wrong source: %q", i+1, l)
				}
			}
			t.Logf("as nobody over %s: %s", proto, fmt.Sprint(want))
		})
	}
}
