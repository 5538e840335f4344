package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/rules"
)

// TestSmokeRealKernel is this package's own end-to-end check that the
// wiring works for real: a server namespace whose iptables LOGs knock
// SYNs (to the host's /dev/kmsg) and drops port 2222; the daemon, in
// process, reads /dev/kmsg and drives iptables inside the namespace
// through the netns runner; a client in another namespace knocks with the
// cipher package's encoding and then connects to 2222 for real. On stop
// (close_on_exit) the opening is gone again.
func TestSmokeRealKernel(t *testing.T) {
	id := netnstest.RandHex(3)
	prefix := "kd" + id + ":"
	chain := "KD" + strings.ToUpper(id)
	const svcPort = 2222
	n := kernelKnockNet(t, prefix)
	srv := n.Client.ServerIP4
	netnstest.MustExec(t, n.Server, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", strconv.Itoa(svcPort), "-j", "DROP")
	netnstest.Listen(t, n.Server, "tcp4", net.JoinHostPort(srv.String(), strconv.Itoa(svcPort)))
	target := net.JoinHostPort(srv.String(), strconv.Itoa(svcPort))
	if err := netnstest.Dial(n.Client.NS, "tcp4", target, 300*time.Millisecond); err == nil {
		t.Fatal("the service answers before any knock: the DROP rule is not in effect")
	}

	cfg := kmsgConfig(t, t.TempDir(), prefix, fmt.Sprintf(`[backend]
type = "iptables"
chain = %q
netns = %q`, chain, n.Server), svcPort)
	key := cipher.Key{Name: "alice", Secret: [32]byte{0x6b, 0x6e, 0x6f, 0x63, 0x6b}, Mode: cipher.Timed}
	be, err := rules.New(rules.Options{Type: "iptables", Chain: chain, Netns: n.Server})
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Check(context.Background()); err != nil {
		netnstest.Unavailable(t, "iptables backend: %v", err)
	}
	var logs logBuf
	d, err := New(Options{Config: cfg, Keys: []cipher.Key{key}, Backend: be,
		Source: logsource.NewKmsg(logsource.KmsgOptions{}),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Teardown(context.Background()) }) // after the daemon stopped
	stop := runDaemon(t, d, &logs)

	knock := func(port uint16) {
		_ = netnstest.Dial(n.Client.NS, "tcp4", net.JoinHostPort(srv.String(), strconv.Itoa(int(port))), 200*time.Millisecond)
	}
	// The kmsg source starts at the newest record: knock on one port
	// until the daemon sees a hit, so that it surely reads the sequence.
	// This stray hit does not spoil the sequence that follows.
	for i := 0; d.ctr.hits.Load() == 0; i++ {
		if i == 50 {
			t.Fatalf("the daemon sees no knock hits in /dev/kmsg (lines read: %d)", d.ctr.lines.Load())
		}
		knock(745)
		time.Sleep(100 * time.Millisecond)
	}
	ports, err := cipher.Encode(key, cipher.Request{Port: svcPort, Time: 5}, time.Now(), 745)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		knock(p)
		time.Sleep(15 * time.Millisecond)
	}
	var dialErr error
	for i := 0; i < 50; i++ {
		if dialErr = netnstest.Dial(n.Client.NS, "tcp4", target, 300*time.Millisecond); dialErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if dialErr != nil {
		t.Fatalf("no connection after the knock: %v", dialErr)
	}
	out := netnstest.MustExec(t, n.Server, "iptables", "-w", "-S", chain)
	if !strings.Contains(out, n.Client.IP4.String()) {
		t.Errorf("chain %s has no rule for the client:\n%s", chain, out)
	}

	stop() // close_on_exit
	out = netnstest.MustExec(t, n.Server, "iptables", "-w", "-S", chain)
	if strings.Contains(out, n.Client.IP4.String()) {
		t.Errorf("the opening survived the daemon's stop:\n%s", out)
	}
	if err := netnstest.Dial(n.Client.NS, "tcp4", target, 300*time.Millisecond); err == nil {
		t.Error("the service still answers after the daemon stopped")
	}
}
