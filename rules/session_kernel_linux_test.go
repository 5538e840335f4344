//go:build linux

package rules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inSet reports whether the nft set listing (a fork, after Open returned)
// holds o: Open must return only once nft has committed the element.
func (h *kernelHost) inSet(t *testing.T, table, set string, o Opening) bool {
	t.Helper()
	out := h.sh(t, "nft", "list", "set", "inet", table, set)
	return strings.Contains(out, fmt.Sprintf("%s . %s . %d", o.Addr, o.Proto, o.Port))
}

// TestKernelNFTablesSession drives Open and Close through the long-lived
// "nft -i" child on the real kernel: the element is committed when Open
// returns and the client gets in; a child killed between requests, or
// stopped (wedged) in the middle of one, costs one fork and no opening;
// concurrent opens all land; Teardown ends the child.
func TestKernelNFTablesSession(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "nft")
	table := nftAdminTable(t, h)
	b, err := NewNFTables(h.r, "inet "+table, "input", "")
	must(t, "new", err)
	if b.sess == nil {
		t.Fatal("ExecRunner through NetnsRunner gave no long-lived child")
	}
	ctx := context.Background()
	must(t, "setup", b.Setup(ctx))
	o := h.client4()
	o.Timeout = time.Hour

	h.mustNotConnect(t, h.n.Client.ServerIP4, "before open")
	must(t, "open", b.Open(ctx, o))
	if !h.inSet(t, table, "knockdaemon", o) {
		t.Fatal("element not in the set when Open returned")
	}
	h.mustConnect(t, h.n.Client.ServerIP4, "after open")
	pid := b.sess.pid()
	if pid == 0 || b.sess.started() != 1 {
		t.Fatalf("open did not go through the long-lived child (pid %d, %d started)", pid, b.sess.started())
	}
	must(t, "open again (refresh)", b.Open(ctx, o))
	must(t, "close", b.Close(ctx, o))
	if h.inSet(t, table, "knockdaemon", o) {
		t.Fatal("element still in the set when Close returned")
	}
	h.mustNotConnect(t, h.n.Client.ServerIP4, "after close")
	if b.sess.pid() != pid || b.sess.started() != 1 {
		t.Fatal("the child was replaced without a reason")
	}

	// Killed between requests: the next command is forked, the one after
	// starts a new child.
	must(t, "kill the child", syscall.Kill(pid, syscall.SIGKILL))
	time.Sleep(50 * time.Millisecond)
	must(t, "open after the kill", b.Open(ctx, o))
	if !h.inSet(t, table, "knockdaemon", o) {
		t.Fatal("opening lost after the child was killed")
	}
	h.mustConnect(t, h.n.Client.ServerIP4, "open after the kill")
	must(t, "close", b.Close(ctx, o))
	if b.sess.started() != 2 || b.sess.pid() == pid || b.sess.pid() == 0 {
		t.Fatalf("after the kill: %d started, pid %d (old %d); want a new child", b.sess.started(), b.sess.pid(), pid)
	}

	// Wedged in the middle of a request (SIGSTOP): the request times out,
	// the child is killed and the command forked; nothing is lost.
	pid = b.sess.pid()
	b.sess.mu.Lock()
	b.sess.timeout = 300 * time.Millisecond
	b.sess.mu.Unlock()
	must(t, "stop the child", syscall.Kill(pid, syscall.SIGSTOP))
	o6 := h.client6()
	must(t, "open through a wedged child", b.Open(ctx, o6))
	if !h.inSet(t, table, "knockdaemon6", o6) {
		t.Fatal("opening lost to a wedged child")
	}
	h.mustConnect(t, h.n.Client.ServerIP6, "open through a wedged child")
	b.sess.mu.Lock()
	b.sess.timeout = defaultSessionTimeout
	b.sess.mu.Unlock()
	must(t, "close v6", b.Close(ctx, o6))
	if syscall.Kill(pid, 0) == nil {
		// Reaping is asynchronous; give it a moment.
		time.Sleep(200 * time.Millisecond)
		if syscall.Kill(pid, 0) == nil {
			t.Fatalf("wedged child %d still exists", pid)
		}
	}

	concurrentOpensThenTeardown(t, ctx, b, b.sess, o)
}

// TestKernelIPSetSession is TestKernelNFTablesSession for ipset: Open and
// Close through one long-lived "ipset -" child, the element present when
// Open returns, a killed child costing one fork, concurrent opens, and
// Teardown ending the child.
func TestKernelIPSetSession(t *testing.T) {
	t.Parallel()
	h := newKernelHost(t, "ipset", "iptables", "ip6tables")
	h.dropPort(t)
	set := "ks" + strings.ToLower(fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff))
	b, err := NewIPSet(h.r, set)
	must(t, "new", err)
	if b.sess == nil {
		t.Fatal("ExecRunner through NetnsRunner gave no long-lived child")
	}
	ctx := context.Background()
	must(t, "setup", b.Setup(ctx))
	inSet := func(o Opening) bool {
		s := set
		if o.Addr.Is6() {
			s = set + "6"
		}
		return strings.Contains(h.sh(t, "ipset", "list", s, "-output", "save"), fmt.Sprintf(" %s,%s:%d", o.Addr, o.Proto, o.Port))
	}
	o := h.client4()
	o.Timeout = time.Hour
	h.mustNotConnect(t, h.n.Client.ServerIP4, "before open")
	must(t, "open", b.Open(ctx, o))
	if !inSet(o) {
		t.Fatal("element not in the set when Open returned")
	}
	h.mustConnect(t, h.n.Client.ServerIP4, "after open")
	pid := b.sess.pid()
	if pid == 0 || b.sess.started() != 1 {
		t.Fatalf("open did not go through the long-lived child (pid %d, %d started)", pid, b.sess.started())
	}
	must(t, "close", b.Close(ctx, o))
	if inSet(o) {
		t.Fatal("element still in the set when Close returned")
	}
	h.mustNotConnect(t, h.n.Client.ServerIP4, "after close")

	must(t, "kill the child", syscall.Kill(pid, syscall.SIGKILL))
	time.Sleep(50 * time.Millisecond)
	o6 := h.client6()
	must(t, "open after the kill", b.Open(ctx, o6))
	if !inSet(o6) {
		t.Fatal("opening lost after the child was killed")
	}
	h.mustConnect(t, h.n.Client.ServerIP6, "open after the kill")
	must(t, "close v6", b.Close(ctx, o6))
	if b.sess.started() != 2 || b.sess.pid() == pid || b.sess.pid() == 0 {
		t.Fatalf("after the kill: %d started, pid %d (old %d); want a new child", b.sess.started(), b.sess.pid(), pid)
	}
	// A failing command through the child is recognised as from a fork:
	// a backend whose sets do not exist.
	missing, err := NewIPSet(h.r, set+"x")
	must(t, "new", err)
	if err := missing.Open(ctx, o); !errors.Is(err, ErrNotExist) || missing.sess.started() != 1 {
		t.Fatalf("Open into a missing set = %v (%d children), want ErrNotExist from the child", err, missing.sess.started())
	}
	must(t, "close in a missing set", missing.Close(ctx, o))
	if n := missing.sess.started(); n != 1 {
		t.Fatalf("%d children after an error answer, want the same one", n)
	}
	must(t, "stop", missing.Stop())

	concurrentOpensThenTeardown(t, ctx, b, b.sess, o)
}

// concurrentOpensThenTeardown opens 30 ports from 30 goroutines at once:
// serialised on the one child, they must all be present. Teardown then
// ends the child.
func concurrentOpensThenTeardown(t *testing.T, ctx context.Context, b Backend, sess *session, o Opening) {
	t.Helper()
	openConcurrently(t, ctx, b, o, 30000, 30)
	got, err := b.List(ctx)
	must(t, "list", err)
	if len(got) != 30 {
		t.Fatalf("List after 30 concurrent opens: %d openings", len(got))
	}
	pid := sess.pid()
	must(t, "teardown", b.Teardown(ctx))
	if sess.pid() != 0 {
		t.Fatal("child still running after Teardown")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("child %d still exists after Teardown", pid)
	}
}
