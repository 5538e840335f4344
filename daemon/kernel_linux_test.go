package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/internal/netnstest"
)

// kernelKnockNet makes a client and a server namespace whose server LOGs
// every SYN to the knock ports (745-1000) with prefix, to the host's
// /dev/kmsg, and answers it with a reset, so each knock is one record.
func kernelKnockNet(t *testing.T, prefix string) *netnstest.Net {
	t.Helper()
	netnstest.Require(t, "iptables")
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	for _, rule := range [][]string{
		{"iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "745:1000", "--syn", "-j", "LOG", "--log-prefix", prefix + " "},
		{"iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "745:1000", "-j", "REJECT", "--reject-with", "tcp-reset"},
	} {
		netnstest.MustExec(t, n.Server, rule...)
	}
	return n
}

// kmsgConfig is a config whose source reads /dev/kmsg for prefix, with
// its state file and control socket in dir, the sections in extra, and
// one user, alice, allowed ports.
func kmsgConfig(t *testing.T, dir, prefix, extra string, ports ...int) *config.Config {
	t.Helper()
	quoted := make([]string, len(ports))
	for i, p := range ports {
		quoted[i] = strconv.Quote(strconv.Itoa(p))
	}
	cfg, err := config.Parse(filepath.Join(dir, "knock.toml"), []byte(fmt.Sprintf(`
[daemon]
state_file = %q
control_socket = %q
[source]
type = "kmsg"
prefix = %q
%s
[[user]]
name = "alice"
key_file = "/unused"
ports = [%s]
`, filepath.Join(dir, "state.json"), filepath.Join(dir, "control.sock"), prefix, extra, strings.Join(quoted, ", "))))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runDaemon runs d until stop or the end of the test. stop cancels Run
// and fails the test when Run returns an error or does not return within
// 30s; it may be called more than once. A failed test logs logs.
func runDaemon(t *testing.T, d *Daemon, logs *logBuf) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return stop
}
