//go:build linux

package rules

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// The real-kernel tests: each runs in a fresh pair of namespaces from
// netnstest, drives the backend through NetnsRunner (as the daemon's
// [backend] netns option does) and checks with real TCP connections from
// the client namespace that an opening lets the client in and a close
// shuts it out again.

const testPort = 2222

// How long a connection attempt that must fail is given; the server drops
// SYNs silently, so a failure takes this long.
const refusedWait = 400 * time.Millisecond

type kernelHost struct {
	n *netnstest.Net
	r Runner
}

func newKernelHost(t testing.TB, tools ...string) *kernelHost {
	t.Helper()
	netnstest.Require(t, tools...)
	n := netnstest.New(t)
	netnstest.Listen(t, n.Server, "tcp", fmt.Sprintf(":%d", testPort))
	return &kernelHost{n: n, r: NetnsRunner(new(ExecRunner), n.Server)}
}

// sh runs argv in the server namespace and fails the test on error.
func (h *kernelHost) sh(t testing.TB, argv ...string) string {
	t.Helper()
	return netnstest.MustExec(t, h.n.Server, argv...)
}

// dropPort makes the server drop new TCP connections to testPort with
// iptables and ip6tables, as an admin's default-deny would.
func (h *kernelHost) dropPort(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"iptables", "ip6tables"} {
		h.sh(t, tool, "-w", "-A", "INPUT", "-p", "tcp", "--dport", strconv.Itoa(testPort), "-j", "DROP")
	}
}

func (h *kernelHost) target(a netip.Addr) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(testPort))
}

func (h *kernelHost) client4() Opening {
	return Opening{Addr: h.n.Client.IP4, Proto: "tcp", Port: testPort}
}

func (h *kernelHost) client6() Opening {
	return Opening{Addr: h.n.Client.IP6, Proto: "tcp", Port: testPort}
}

// mustConnect asserts a connection from the client to server address a
// is answered.
func (h *kernelHost) mustConnect(t *testing.T, a netip.Addr, when string) {
	t.Helper()
	if err := netnstest.Dial(h.n.Client.NS, "tcp", h.target(a), 2*time.Second); err != nil {
		t.Fatalf("%s: connection to %s failed: %v", when, h.target(a), err)
	}
}

// mustNotConnect asserts a connection attempt is not answered.
func (h *kernelHost) mustNotConnect(t *testing.T, a netip.Addr, when string) {
	t.Helper()
	if err := netnstest.Dial(h.n.Client.NS, "tcp", h.target(a), refusedWait); err == nil {
		t.Fatalf("%s: connection to %s succeeded, want it blocked", when, h.target(a))
	}
}

func mustList(t *testing.T, b Backend, want ...Opening) {
	t.Helper()
	got, err := b.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for i := range got {
		got[i].Timeout = 0
	}
	sortOpenings(got)
	sortOpenings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
}

// lifecycle is the common scenario: blocked, open (twice), connect, close
// (twice), blocked, for each opening in os.
func lifecycle(t *testing.T, h *kernelHost, b Backend, count func(t *testing.T) int, openings ...Opening) {
	t.Helper()
	ctx := context.Background()
	for _, o := range openings {
		server := h.n.Client.ServerIP4
		if o.Addr.Is6() {
			server = h.n.Client.ServerIP6
		}
		h.mustNotConnect(t, server, "before open "+o.String())
		must(t, "open", b.Open(ctx, o))
		h.mustConnect(t, server, "after open "+o.String())
		must(t, "open again", b.Open(ctx, o))
		if n := count(t); n != 1 {
			t.Fatalf("after opening %s twice the firewall holds %d entries, want 1", o, n)
		}
		mustList(t, b, Opening{Addr: o.Addr, Proto: o.Proto, Port: o.Port})
		must(t, "close", b.Close(ctx, o))
		h.mustNotConnect(t, server, "after close "+o.String())
		must(t, "close again (absent)", b.Close(ctx, o))
		if n := count(t); n != 0 {
			t.Fatalf("after closing %s the firewall holds %d entries, want 0", o, n)
		}
		mustList(t, b)
	}
}

// awaitExpiry waits (bounded) until the backend lists nothing, with no
// daemon doing anything: the kernel timeout removed the opening.
func awaitExpiry(t *testing.T, b Backend, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := b.List(context.Background())
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(got) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("opening %v still there %v after it should have expired", got, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countLines(out, substr string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func TestKernelIPTables(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "iptables", "ip6tables")
	h.dropPort(t)
	b, err := NewIPTables(h.r, "KD"+strings.ToUpper(netnstest.RandHex(3)))
	must(t, "new", err)
	ctx := context.Background()
	must(t, "check", b.Check(ctx))
	must(t, "setup", b.Setup(ctx))
	must(t, "setup again", b.Setup(ctx))
	for _, tool := range []string{"iptables", "ip6tables"} {
		if n := countLines(h.sh(t, tool, "-w", "-S", "INPUT"), "-j "+b.Chain()); n != 1 {
			t.Fatalf("%s INPUT has %d jumps to %s after two setups, want 1", tool, n, b.Chain())
		}
	}
	count := func(t *testing.T) int {
		return countLines(h.sh(t, "iptables", "-w", "-S", b.Chain()), "-A ") +
			countLines(h.sh(t, "ip6tables", "-w", "-S", b.Chain()), "-A ")
	}
	lifecycle(t, h, b, count, h.client4(), h.client6())

	// UDP openings are rules too.
	u := Opening{Addr: h.n.Client.IP4, Proto: "udp", Port: 53}
	must(t, "open udp", b.Open(ctx, u))
	mustList(t, b, u)

	// Teardown removes the jump and the chain with what is still in it.
	must(t, "open before teardown", b.Open(ctx, h.client6()))
	must(t, "teardown", b.Teardown(ctx))
	must(t, "teardown again", b.Teardown(ctx))
	must(t, "close after teardown", b.Close(ctx, h.client6()))
	for _, tool := range []string{"iptables", "ip6tables"} {
		if out := h.sh(t, tool, "-w", "-S"); strings.Contains(out, b.Chain()) {
			t.Fatalf("%s still mentions %s after teardown:\n%s", tool, b.Chain(), out)
		}
	}
	h.mustNotConnect(t, h.n.Client.ServerIP6, "after teardown")
}

func TestKernelIPSet(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "ipset", "iptables", "ip6tables")
	h.dropPort(t)
	set := "kd" + netnstest.RandHex(3)
	b, err := NewIPSet(h.r, set)
	must(t, "new", err)
	ctx := context.Background()
	must(t, "check", b.Check(ctx))
	must(t, "setup", b.Setup(ctx))
	must(t, "setup again", b.Setup(ctx))
	for _, tool := range []string{"iptables", "ip6tables"} {
		if n := countLines(h.sh(t, tool, "-w", "-S", "INPUT"), "--match-set "+set); n != 1 {
			t.Fatalf("%s INPUT has %d rules matching the set after two setups, want 1", tool, n)
		}
	}
	count := func(t *testing.T) int {
		return countLines(h.sh(t, "ipset", "list", set, "-output", "save"), "add ") +
			countLines(h.sh(t, "ipset", "list", set+"6", "-output", "save"), "add ")
	}
	lifecycle(t, h, b, count, h.client4(), h.client6())

	u := Opening{Addr: h.n.Client.IP4, Proto: "udp", Port: 53}
	must(t, "open udp", b.Open(ctx, u))
	mustList(t, b, u)
	must(t, "close udp", b.Close(ctx, u))
	mustList(t, b)

	// An opening with a kernel timeout disappears by itself, and the
	// client is shut out again; opening again refreshed the timeout.
	o := h.client4()
	o.Timeout = 1 * time.Second
	must(t, "open 1s", b.Open(ctx, o))
	o.Timeout = 2 * time.Second
	must(t, "refresh to 2s", b.Open(ctx, o))
	if out := h.sh(t, "ipset", "list", set, "-output", "save"); !strings.Contains(out, " timeout 2") && !strings.Contains(out, " timeout 1") {
		t.Fatalf("element has no timeout:\n%s", out)
	}
	h.mustConnect(t, h.n.Client.ServerIP4, "within the timeout")
	awaitExpiry(t, b, 4*time.Second)
	h.mustNotConnect(t, h.n.Client.ServerIP4, "after the kernel timeout")

	must(t, "open before teardown", b.Open(ctx, h.client6()))
	must(t, "teardown", b.Teardown(ctx))
	must(t, "teardown again", b.Teardown(ctx))
	must(t, "close after teardown", b.Close(ctx, h.client6()))
	if out := h.sh(t, "ipset", "list", "-n"); strings.Contains(out, set) {
		t.Fatalf("sets left after teardown:\n%s", out)
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if out := h.sh(t, tool, "-w", "-S"); strings.Contains(out, set) {
			t.Fatalf("%s still matches %s after teardown:\n%s", tool, set, out)
		}
	}
}

// nftAdminTable creates the admin's own table: an inet table with an input
// chain that drops new connections to testPort.
func nftAdminTable(t testing.TB, h *kernelHost) string {
	t.Helper()
	table := "kt" + netnstest.RandHex(3)
	h.sh(t, "nft", "add", "table", "inet", table)
	h.sh(t, "nft", "add", "chain", "inet", table, "input", "{", "type", "filter", "hook", "input", "priority", "0", ";", "policy", "accept", ";", "}")
	h.sh(t, "nft", "add", "rule", "inet", table, "input", "tcp", "dport", strconv.Itoa(testPort), "drop")
	return table
}

func TestKernelNFTables(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "nft")
	table := nftAdminTable(t, h)
	b, err := NewNFTables(h.r, "inet "+table, "input", "")
	must(t, "new", err)
	ctx := context.Background()
	must(t, "check", b.Check(ctx))
	must(t, "setup", b.Setup(ctx))
	must(t, "setup again", b.Setup(ctx))
	if n := countLines(h.sh(t, "nft", "-a", "list", "chain", "inet", table, "input"), "comment \"knockdaemon "); n != 2 {
		t.Fatalf("chain holds %d daemon rules after two setups, want 2 (one per family)", n)
	}
	count := func(t *testing.T) int {
		got, err := b.List(ctx)
		must(t, "list", err)
		return len(got)
	}
	lifecycle(t, h, b, count, h.client4(), h.client6())

	// UDP elements are listed as udp and closed like tcp ones.
	u := Opening{Addr: h.n.Client.IP6, Proto: "udp", Port: 53}
	must(t, "open udp", b.Open(ctx, u))
	mustList(t, b, u)
	must(t, "close udp", b.Close(ctx, u))
	mustList(t, b)

	// Kernel timeout: gone by itself, client shut out again. Open with a
	// long timeout first, then refresh to a short one: the refresh must
	// replace the timeout. Both ways are checked where the kernel has
	// both: one "add" (Linux 6.10+, found by Setup's probe) and create +
	// the atomic add/delete/add transaction (every kernel).
	t.Logf("kernel updates timeouts on add: %v", b.addUpdates.Load())
	paths := []bool{b.addUpdates.Load()}
	if paths[0] {
		paths = append(paths, false)
	}
	o := h.client6()
	for _, updates := range paths {
		b.addUpdates.Store(updates)
		o.Timeout = time.Hour
		must(t, "open 1h", b.Open(ctx, o))
		o.Timeout = 2 * time.Second
		must(t, "refresh to 2s", b.Open(ctx, o))
		got, err := b.List(ctx)
		must(t, "list", err)
		if len(got) != 1 || got[0].Timeout <= 0 || got[0].Timeout > 2*time.Second {
			t.Fatalf("updates=%v: after refresh List = %v, want one element with at most 2s left", updates, got)
		}
	}
	h.mustConnect(t, h.n.Client.ServerIP6, "within the timeout")
	awaitExpiry(t, b, 4*time.Second)
	h.mustNotConnect(t, h.n.Client.ServerIP6, "after the kernel timeout")

	must(t, "open before teardown", b.Open(ctx, h.client4()))
	must(t, "teardown", b.Teardown(ctx))
	must(t, "teardown again", b.Teardown(ctx))
	must(t, "close after teardown", b.Close(ctx, h.client4()))
	if out := h.sh(t, "nft", "list", "table", "inet", table); strings.Contains(out, "knockdaemon") {
		t.Fatalf("daemon objects left after teardown:\n%s", out)
	}
	h.mustNotConnect(t, h.n.Client.ServerIP4, "after teardown")
}

func TestKernelNFTablesMissingChain(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "nft")
	b, err := NewNFTables(h.r, "inet nosuch"+netnstest.RandHex(2), "input", "")
	must(t, "new", err)
	ctx := context.Background()
	if err := b.Check(ctx); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("Check = %v, want ErrNotExist with a hint", err)
	}
	if err := b.Setup(ctx); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Setup = %v, want ErrNotExist", err)
	}
	must(t, "teardown of nothing", b.Teardown(ctx))
}

// BenchmarkKernelOpen measures Open per backend on the real kernel and
// reports it as a ratio to a baseline measured in the same run: starting
// "true" through the same runner (x-baseline). Two ways of reaching the
// namespace: through "ip netns exec" (NetnsRunner, what the e2e tests use)
// and from a thread inside the namespace (what a daemon running there
// pays). "new" opens a fresh opening each time (the knock case), "again"
// refreshes one that exists. Run as root with a fixed count, for example
//
//	go test -run XXX -bench KernelOpen -benchtime 100x ./rules
func BenchmarkKernelOpen(b *testing.B) {
	h := newKernelHost(b, "nft", "ipset", "iptables", "ip6tables")
	table := nftAdminTable(b, h)
	ctx := context.Background()
	backends := []struct {
		name string
		mk   func(r Runner) (Backend, error)
	}{
		{"nftables", func(r Runner) (Backend, error) { return NewNFTables(r, "inet "+table, "input", "") }},
		// The same backend without the long-lived child: one fork each.
		{"nftables-fork", func(r Runner) (Backend, error) { return NewNFTables(forkOnly{r}, "inet "+table, "input", "") }},
		{"ipset", func(r Runner) (Backend, error) { return NewIPSet(r, "kb"+netnstest.RandHex(3)) }},
		{"ipset-fork", func(r Runner) (Backend, error) { return NewIPSet(forkOnly{r}, "kb"+netnstest.RandHex(3)) }},
		{"iptables", func(r Runner) (Backend, error) { return NewIPTables(r, "KB"+strings.ToUpper(netnstest.RandHex(3))) }},
	}
	for _, via := range []string{"netns-exec", "in-namespace"} {
		r := Runner(new(ExecRunner))
		if via == "netns-exec" {
			r = h.r
		}
		for _, bc := range backends {
			for _, mode := range []string{"new", "again"} {
				b.Run(via+"/"+bc.name+"/"+mode, func(b *testing.B) {
					err := netnstest.Do(h.n.Server, func() error {
						be, err := bc.mk(r)
						if err != nil {
							return err
						}
						if err := be.Setup(ctx); err != nil {
							return err
						}
						defer be.Teardown(ctx) // also ends a long-lived child
						o := Opening{Addr: h.n.Client.IP4, Proto: "tcp", Port: 1, Timeout: time.Hour}
						if mode == "again" {
							if err := be.Open(ctx, o); err != nil {
								return err
							}
						}
						base := baseline(ctx, r)
						b.ResetTimer()
						for i := range b.N {
							if mode == "new" {
								o.Port = uint16(1 + i%65535)
							}
							if err := be.Open(ctx, o); err != nil {
								return err
							}
						}
						b.StopTimer()
						b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(base), "x-baseline")
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				})
			}
		}
	}
}

// forkOnly hides a runner's StartStream: every command is a fork.
type forkOnly struct{ r Runner }

func (f forkOnly) Run(ctx context.Context, argv []string) ([]byte, error) { return f.r.Run(ctx, argv) }

// baseline is the median time to run "true" through r.
func baseline(ctx context.Context, r Runner) time.Duration {
	var d []time.Duration
	for range 15 {
		start := time.Now()
		if _, err := r.Run(ctx, []string{"true"}); err != nil {
			return time.Nanosecond
		}
		d = append(d, time.Since(start))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// TestKernelNFTablesSingleFamily runs the backend against an admin's "ip"
// and an "ip6" table: one set and one rule each, and the other family's
// openings refused.
func TestKernelNFTablesSingleFamily(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "nft")
	ctx := context.Background()
	for _, tc := range []struct {
		family     string
		own, other Opening
		server     netip.Addr
	}{
		{"ip", h.client4(), h.client6(), h.n.Client.ServerIP4},
		{"ip6", h.client6(), h.client4(), h.n.Client.ServerIP6},
	} {
		t.Run(tc.family, func(t *testing.T) {
			table := "kf" + netnstest.RandHex(3)
			h.sh(t, "nft", "add", "table", tc.family, table)
			h.sh(t, "nft", "add", "chain", tc.family, table, "in", "{", "type", "filter", "hook", "input", "priority", "0", ";", "}")
			h.sh(t, "nft", "add", "rule", tc.family, table, "in", "tcp", "dport", strconv.Itoa(testPort), "drop")
			b, err := NewNFTables(h.r, tc.family+" "+table, "in", "")
			must(t, "new", err)
			must(t, "setup", b.Setup(ctx))
			if n := countLines(h.sh(t, "nft", "list", "chain", tc.family, table, "in"), "comment \"knockdaemon "); n != 1 {
				t.Fatalf("%d daemon rules in a %s table, want 1", n, tc.family)
			}
			h.mustNotConnect(t, tc.server, "before open")
			must(t, "open", b.Open(ctx, tc.own))
			h.mustConnect(t, tc.server, "after open")
			if err := b.Open(ctx, tc.other); err == nil {
				t.Fatalf("a %s table accepted %v", tc.family, tc.other.Addr)
			}
			mustList(t, b, tc.own)
			must(t, "teardown", b.Teardown(ctx))
			if out := h.sh(t, "nft", "list", "table", tc.family, table); strings.Contains(out, "knockdaemon") {
				t.Fatalf("daemon objects left after teardown:\n%s", out)
			}
			h.mustNotConnect(t, tc.server, "after teardown")
		})
	}
}
