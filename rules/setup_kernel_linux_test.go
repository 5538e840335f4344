//go:build linux

package rules

import (
	"context"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// failingRunner runs commands through r, except those whose FormatArgv
// line contains fail: they fail as the tool would (exit 4), without
// running.
type failingRunner struct {
	r    Runner
	fail string
}

func (f failingRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	if strings.Contains(FormatArgv(argv), f.fail) {
		return nil, &CmdError{Argv: argv, ExitCode: 4, Stderr: "injected failure"}
	}
	return f.r.Run(ctx, argv)
}

// TestKernelSetupFailureLeavesNothing: a Setup that fails half way (the
// IPv6 half, after the IPv4 half was applied) removes on the real kernel
// what it created, and keeps what existed before it.
func TestKernelSetupFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "iptables", "ip6tables", "ipset", "nft")
	ctx := context.Background()
	saved := func(t *testing.T) string {
		return h.sh(t, "iptables-save") + h.sh(t, "ip6tables-save") + h.sh(t, "ipset", "list", "-n")
	}

	t.Run("iptables", func(t *testing.T) {
		chain := "KS" + strings.ToUpper(netnstest.RandHex(3))
		before := saved(t)
		b, err := NewIPTables(failingRunner{h.r, "ip6tables -w -N " + chain}, chain)
		must(t, "new", err)
		if err := b.Setup(ctx); err == nil {
			t.Fatal("Setup with a failing ip6tables succeeded")
		}
		if after := saved(t); strings.Contains(after, chain) {
			t.Fatalf("chain %s left after the failed Setup:\n%s", chain, after)
		} else if countLines(after, "-A INPUT") != countLines(before, "-A INPUT") {
			t.Fatalf("INPUT changed by the failed Setup:\nbefore:\n%s\nafter:\n%s", before, after)
		}

		// A chain and jump that were there before stay.
		h.sh(t, "iptables", "-w", "-N", chain)
		h.sh(t, "iptables", "-w", "-I", "INPUT", "1", "-j", chain)
		if err := b.Setup(ctx); err == nil {
			t.Fatal("Setup with a failing ip6tables succeeded")
		}
		if out := h.sh(t, "iptables", "-w", "-S"); !strings.Contains(out, "-N "+chain) || !strings.Contains(out, "-A INPUT -j "+chain) {
			t.Fatalf("the admin's chain or jump was removed:\n%s", out)
		}
		h.sh(t, "iptables", "-w", "-D", "INPUT", "-j", chain)
		h.sh(t, "iptables", "-w", "-X", chain)
	})

	t.Run("ipset", func(t *testing.T) {
		set := "ks" + netnstest.RandHex(3)
		b, err := NewIPSet(failingRunner{h.r, "ip6tables -w -I INPUT 1 -m set --match-set " + set + "6"}, set)
		must(t, "new", err)
		if err := b.Setup(ctx); err == nil {
			t.Fatal("Setup with a failing ip6tables succeeded")
		}
		if after := saved(t); strings.Contains(after, set) {
			t.Fatalf("set %s or its rules left after the failed Setup:\n%s", set, after)
		}

		// A set that was there before stays.
		h.sh(t, "ipset", "create", set, "hash:ip,port", "family", "inet", "timeout", "0")
		if err := b.Setup(ctx); err == nil {
			t.Fatal("Setup with a failing ip6tables succeeded")
		}
		after := saved(t)
		if !strings.Contains(h.sh(t, "ipset", "list", "-n"), set+"\n") || strings.Contains(after, set+"6") || strings.Contains(after, "--match-set "+set+" ") {
			t.Fatalf("after the second failed Setup (set %s existed): want it alone kept:\n%s", set, after)
		}
		h.sh(t, "ipset", "destroy", set)
	})

	t.Run("nftables", func(t *testing.T) {
		// The IPv6 set exists with another type: the one transaction
		// fails as a whole, and the IPv4 set and both rules are not made.
		table := nftAdminTable(t, h)
		h.sh(t, "nft", "add", "set", "inet", table, "knockdaemon6", "{", "type", "ipv4_addr", ";", "}")
		b, err := NewNFTables(h.r, "inet "+table, "input", "")
		must(t, "new", err)
		if err := b.Setup(ctx); err == nil {
			t.Fatal("Setup against a set of another type succeeded")
		}
		out := h.sh(t, "nft", "list", "table", "inet", table)
		if strings.Contains(out, "set knockdaemon {") || strings.Contains(out, "comment \"knockdaemon") {
			t.Fatalf("failed Setup left its set or rules:\n%s", out)
		}
		if !strings.Contains(out, "set knockdaemon6 {") {
			t.Fatalf("the admin's set was removed:\n%s", out)
		}
	})
}
