package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const nftDescribe = "meta expression, datatype integer (integer), 32 bits"

// nftAnswers answers as nft -i 1.0.6 does: one line for the sentinel,
// nothing for a command that worked, "Error: ..." plus the command and a
// caret line for one in fail (keyed by the line).
func nftAnswers(fail map[string]string) func([]string, string) ([]string, bool) {
	return func(_ []string, line string) ([]string, bool) {
		if line == nftSentinel {
			return []string{nftDescribe}, false
		}
		if msg, ok := fail[line]; ok {
			return []string{msg, line, "    ^^^^^"}, false
		}
		return nil, false
	}
}

func mkNFTStream(t *testing.T, f *FakeStreamRunner) *NFTables {
	t.Helper()
	b, err := NewNFTables(f, "inet filter", "input", "")
	if err != nil {
		t.Fatal(err)
	}
	if b.sess == nil {
		t.Fatal("a StreamRunner gave no session")
	}
	return b
}

func TestNFTablesSessionLines(t *testing.T) {
	const (
		create4 = "create element inet filter knockdaemon { 198.51.100.7 . tcp . 22 timeout 90s }"
		add6    = "add element inet filter knockdaemon6 { 2001:db8::7 . tcp . 443 timeout 2s }"
		close4  = "add element inet filter knockdaemon { 198.51.100.7 . tcp . 22 } ; delete element inet filter knockdaemon { 198.51.100.7 . tcp . 22 }"
		refresh = "add element inet filter knockdaemon { 198.51.100.7 . tcp . 22 } ; delete element inet filter knockdaemon { 198.51.100.7 . tcp . 22 } ; add element inet filter knockdaemon { 198.51.100.7 . tcp . 22 timeout 90s }"
	)
	ctx := context.Background()
	f := &FakeStreamRunner{Answer: nftAnswers(map[string]string{
		// The second create finds the element: File exists.
	})}
	b := mkNFTStream(t, f)
	must(t, "open v4", b.Open(ctx, v4))
	b.addUpdates.Store(true)
	must(t, "open v6 (add: the kernel updates timeouts)", b.Open(ctx, v6))
	b.addUpdates.Store(false)
	must(t, "close v4", b.Close(ctx, v4))

	// EEXIST on create: the refresh transaction goes to the same child.
	f.Answer = nftAnswers(map[string]string{create4: "Error: Could not process rule: File exists"})
	must(t, "open v4 again", b.Open(ctx, v4))

	// A missing set on close is not an error (classified as on a fork).
	f.Answer = nftAnswers(map[string]string{close4: "Error: Could not process rule: No such file or directory"})
	must(t, "close v4 without set", b.Close(ctx, v4))

	// Any other error fails the operation with nft's text.
	f.Answer = nftAnswers(map[string]string{create4: "Error: Could not process rule: Operation not permitted"})
	err := b.Open(ctx, v4)
	var ce *CmdError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "Operation not permitted") || ce.Argv[0] != "nft" {
		t.Fatalf("Open with EPERM = %v, want a *CmdError with nft's answer", err)
	}

	want := []string{nftSentinel, nftSentinel, // handshake
		create4, nftSentinel, add6, nftSentinel, close4, nftSentinel,
		create4, nftSentinel, refresh, nftSentinel,
		close4, nftSentinel,
		create4, nftSentinel}
	if got := f.Written(); !slices.Equal(got, want) {
		t.Fatalf("lines written:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := f.Starts(); !slices.Equal(got, []string{"nft -i"}) {
		t.Fatalf("started %q, want one nft -i", got)
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Fatalf("forked %q, want nothing (all through the child)", calls)
	}
	must(t, "stop", b.Stop())
	if b.sess.pid() != 0 {
		t.Fatal("child still there after Stop")
	}
}

// A child that stops answering is killed, the command is run once as a
// fork, and the next request starts a new child.
func TestNFTablesSessionWedgedFallsBackToFork(t *testing.T) {
	ctx := context.Background()
	const create4 = "create element inet filter knockdaemon { 198.51.100.7 . tcp . 22 timeout 90s }"
	f := &FakeStreamRunner{}
	hang := true
	var mu sync.Mutex
	f.Answer = func(argv []string, line string) ([]string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if line == create4 && hang {
			hang = false
			return nil, true
		}
		return nftAnswers(nil)(argv, line)
	}
	b := mkNFTStream(t, f)
	b.sess.timeout = 200 * time.Millisecond
	start := time.Now()
	must(t, "open through a wedged child", b.Open(ctx, v4))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("open took %v", d)
	}
	if got, want := f.Calls(), []string{"nft create element inet filter knockdaemon { 198.51.100.7 . tcp . 22 timeout 90s }"}; !slices.Equal(got, want) {
		t.Fatalf("forks %q, want %q", got, want)
	}
	must(t, "open again", b.Open(ctx, v4))
	if n := len(f.Starts()); n != 2 {
		t.Fatalf("%d children started, want 2 (the wedged one replaced)", n)
	}
	if n := len(f.Calls()); n != 1 {
		t.Fatalf("%d forks, want still 1", n)
	}
}

// A child that died between requests (killed, crashed) is noticed; the
// command is forked and the next one goes to a new child.
func TestNFTablesSessionKilledChild(t *testing.T) {
	ctx := context.Background()
	f := &FakeStreamRunner{Answer: nftAnswers(nil)}
	b := mkNFTStream(t, f)
	must(t, "open", b.Open(ctx, v4))
	f.KillAll()
	must(t, "close after the kill", b.Close(ctx, v4))
	must(t, "open after the kill", b.Open(ctx, v4))
	if n := len(f.Starts()); n != 2 {
		t.Fatalf("%d children started, want 2", n)
	}
	if got := f.Calls(); len(got) != 1 || !strings.HasPrefix(got[0], "nft add element inet filter knockdaemon { 198.51.100.7 . tcp . 22 } ';' delete") {
		t.Fatalf("forks %q, want the close once", got)
	}
}

func TestNFTablesSessionUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		startErr   error
		answer     func([]string, string) ([]string, bool)
		wantStarts int
	}{
		{"runner cannot start streams", fmt.Errorf("no: %w", ErrNotSupported), nil, 1},
		{"nft not installed", &CmdError{Argv: []string{"nft", "-i"}, ExitCode: -1, Err: ErrNotFound}, nil, 3},
		{"describe answers two lines", nil, func(_ []string, l string) ([]string, bool) {
			if l == nftSentinel {
				return []string{"a", "b"}, false
			}
			return nil, false
		}, 1},
		{"describe answers an error", nil, func(_ []string, l string) ([]string, bool) {
			return []string{"Error: syntax error"}, false
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &FakeStreamRunner{StartErr: tc.startErr, Answer: tc.answer}
			b := mkNFTStream(t, f)
			b.sess.timeout = 200 * time.Millisecond
			for range 3 {
				must(t, "open", b.Open(ctx, v4))
			}
			if n := len(f.Calls()); n != 3 {
				t.Fatalf("%d forks, want 3: %q", n, f.Calls())
			}
			if n := len(f.Starts()); n != tc.wantStarts {
				t.Fatalf("%d starts, want %d", n, tc.wantStarts)
			}
		})
	}
}

// Plain runners (FakeRunner, anything without StartStream) keep the fork
// path; NetnsRunner over a StreamRunner starts the child in the
// namespace.
func TestNFTablesSessionRunners(t *testing.T) {
	if b := mkNFTables(new(FakeRunner)).(*NFTables); b.sess != nil {
		t.Fatal("a plain Runner got a session")
	}
	f := &FakeStreamRunner{Answer: nftAnswers(nil)}
	b, err := NewNFTables(NetnsRunner(f, "fw"), "inet filter", "input", "")
	must(t, "new", err)
	must(t, "open", b.Open(context.Background(), v4))
	if got := f.Starts(); !slices.Equal(got, []string{"ip netns exec fw nft -i"}) {
		t.Fatalf("started %q", got)
	}
}

func TestNFTablesSessionConcurrent(t *testing.T) {
	ctx := context.Background()
	f := &FakeStreamRunner{Answer: nftAnswers(nil)}
	b := mkNFTStream(t, f)
	openConcurrently(t, ctx, b, v4, 1000, 40)
	got := f.Written()[2:] // after the handshake
	if len(got) != 80 {
		t.Fatalf("%d lines, want 80", len(got))
	}
	seen := map[string]bool{}
	for i := 0; i < len(got); i += 2 {
		if !strings.HasPrefix(got[i], "create element inet filter knockdaemon { 198.51.100.7 . tcp . ") || got[i+1] != nftSentinel {
			t.Fatalf("lines %d, %d: %q, %q: requests interleaved", i, i+1, got[i], got[i+1])
		}
		seen[got[i]] = true
	}
	if len(seen) != 40 {
		t.Fatalf("%d distinct requests, want 40", len(seen))
	}
}

func TestSessionRefusesBadLines(t *testing.T) {
	s := newSession(&FakeStreamRunner{Answer: nftAnswers(nil)}, &nftProto{})
	for _, l := range []string{"", "add element x\nflush ruleset", "a\rb", "add element \\", "x\x00y"} {
		if err := s.do(context.Background(), l, []string{"nft"}); err == nil || errors.Is(err, errSessionBroken) {
			t.Errorf("line %q: %v, want a refusal", l, err)
		}
	}
	if _, err := nftLine([]string{"nft", "-f", "/etc/passwd"}); err == nil {
		t.Error("nftLine accepted an option")
	}
}

func TestSessionContextCancelled(t *testing.T) {
	f := &FakeStreamRunner{Answer: nftAnswers(nil)}
	b := mkNFTStream(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Open(ctx, v4); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context = %v", err)
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("forked %q after cancellation", f.Calls())
	}
}

// ipsetAnswers answers as "ipset -" 7.17 does on standard error: the
// sentinel's parse error naming its token, nothing for a command that
// worked, "ipset v7.17: ..." for one in fail.
func ipsetAnswers(fail map[string]string) func([]string, string) ([]string, bool) {
	return func(_ []string, line string) ([]string, bool) {
		if tok, ok := strings.CutPrefix(line, "create knockdaemon-sync "); ok {
			return []string{"ipset v7.17: Syntax error: typename '" + tok + "' is unknown"}, false
		}
		if msg, ok := fail[line]; ok {
			return []string{"ipset v7.17: " + msg}, false
		}
		return nil, false
	}
}

func TestIPSetSessionLines(t *testing.T) {
	const (
		add4 = "-exist add knockdaemon 198.51.100.7,tcp:22 timeout 90"
		add6 = "-exist add knockdaemon6 2001:db8::7,tcp:443 timeout 2"
		del4 = "-exist del knockdaemon 198.51.100.7,tcp:22"
	)
	ctx := context.Background()
	f := &FakeStreamRunner{Answer: ipsetAnswers(nil)}
	b, err := NewIPSet(f, "")
	must(t, "new", err)
	must(t, "open v4", b.Open(ctx, v4))
	must(t, "open v6", b.Open(ctx, v6))
	must(t, "close v4", b.Close(ctx, v4))
	f.Answer = ipsetAnswers(map[string]string{del4: "The set with the given name does not exist"})
	must(t, "close without the set", b.Close(ctx, v4))
	f.Answer = ipsetAnswers(map[string]string{add4: "Kernel error received: Operation not permitted"})
	err = b.Open(ctx, v4)
	var ce *CmdError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "Operation not permitted") || ce.Argv[0] != "ipset" {
		t.Fatalf("Open with EPERM = %v, want a *CmdError with ipset's answer", err)
	}
	want := []string{"create knockdaemon-sync knockdaemon.sync.0.",
		add4, "create knockdaemon-sync knockdaemon.sync.1.",
		add6, "create knockdaemon-sync knockdaemon.sync.2.",
		del4, "create knockdaemon-sync knockdaemon.sync.3.",
		del4, "create knockdaemon-sync knockdaemon.sync.4.",
		add4, "create knockdaemon-sync knockdaemon.sync.5."}
	if got := f.Written(); !slices.Equal(got, want) {
		t.Fatalf("lines written:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := f.Starts(); !slices.Equal(got, []string{"ipset -"}) {
		t.Fatalf("started %q", got)
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Fatalf("forked %q", calls)
	}

	// An answer naming another request (out of step) breaks the child:
	// the command is forked, the next one gets a new child.
	f.Answer = func(_ []string, line string) ([]string, bool) {
		if strings.HasPrefix(line, "create knockdaemon-sync ") {
			return []string{"ipset v7.17: Syntax error: typename 'knockdaemon.sync.99.' is unknown"}, false
		}
		return nil, false
	}
	b.sess.timeout = 200 * time.Millisecond
	must(t, "open with an answer out of step", b.Open(ctx, v4))
	if got := f.Calls(); !slices.Equal(got, []string{"ipset -exist add knockdaemon 198.51.100.7,tcp:22 timeout 90"}) {
		t.Fatalf("forks %q", got)
	}
	if _, err := ipsetLine([]string{"ipset", "add", "x", "a b"}); err == nil {
		t.Fatal("ipsetLine accepted an argument with a space")
	}
}
