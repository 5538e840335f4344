package rules

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExecRunner(t *testing.T) {
	var r ExecRunner
	ctx := context.Background()
	t.Run("stdout of a successful command", func(t *testing.T) {
		out, err := r.Run(ctx, []string{"printf", "%s|%s", "a b", "$HOME;"})
		if err != nil || string(out) != "a b|$HOME;" {
			t.Fatalf("Run = %q, %v", out, err)
		}
	})
	t.Run("exit status and stderr of a failing command", func(t *testing.T) {
		_, err := r.Run(ctx, []string{"sh", "-c", "echo out; echo 'it broke' >&2; exit 3"})
		var ce *CmdError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v is not a *CmdError", err)
		}
		if ce.ExitCode != 3 || ce.Stderr != "it broke" || ce.Argv[0] != "sh" {
			t.Fatalf("CmdError = %+v", ce)
		}
		if msg := err.Error(); !strings.Contains(msg, "exit status 3") || !strings.Contains(msg, "it broke") {
			t.Fatalf("message %q lacks status or stderr", msg)
		}
	})
	t.Run("the C locale", func(t *testing.T) {
		t.Setenv("LANG", "de_DE.UTF-8")
		t.Setenv("LC_MESSAGES", "de_DE.UTF-8")
		var r ExecRunner
		out, err := r.Run(ctx, []string{"sh", "-c", `echo "$LC_ALL|$LANG|$LC_MESSAGES"`})
		if err != nil || string(out) != "C||\n" {
			t.Fatalf("environment seen by the child: %q, %v", out, err)
		}
	})
	t.Run("stderr is bounded", func(t *testing.T) {
		_, err := r.Run(ctx, []string{"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x >&2; exit 1"})
		var ce *CmdError
		if !errors.As(err, &ce) || ce.ExitCode != 1 {
			t.Fatalf("error = %v", err)
		}
		if len(ce.Stderr) != maxStderr {
			t.Fatalf("stderr kept %d bytes, want the first %d", len(ce.Stderr), maxStderr)
		}
	})
	t.Run("missing binary", func(t *testing.T) {
		_, err := r.Run(ctx, []string{"knockdaemon-no-such-tool"})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("error = %v, want ErrNotFound", err)
		}
	})
	t.Run("empty argv", func(t *testing.T) {
		if _, err := r.Run(ctx, nil); err == nil {
			t.Fatal("empty argv accepted")
		}
	})
	t.Run("cancellation kills the process group", func(t *testing.T) {
		dir := t.TempDir()
		marker := filepath.Join(dir, "grandchild-survived")
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		// The grandchild would write the marker after 0.6 s unless the
		// whole group is killed.
		_, err := r.Run(cctx, []string{"sh", "-c", "(sleep 0.6; touch " + marker + ") & sleep 10"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Run returned after %v", d)
		}
		time.Sleep(time.Second)
		if _, err := os.Stat(marker); err == nil {
			t.Fatal("a grandchild survived the cancellation")
		}
	})
	t.Run("a command without deadline is bounded by Timeout", func(t *testing.T) {
		r := ExecRunner{Timeout: 200 * time.Millisecond}
		start := time.Now()
		_, err := r.Run(ctx, []string{"sleep", "10"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Run returned after %v", d)
		}
	})
	t.Run("binary looked up once", func(t *testing.T) {
		var r ExecRunner
		dir := t.TempDir()
		bin := filepath.Join(dir, "knock-test-tool")
		if err := os.WriteFile(bin, []byte("#!/bin/sh\necho first\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
		if out, err := r.Run(ctx, []string{"knock-test-tool"}); err != nil || string(out) != "first\n" {
			t.Fatalf("Run = %q, %v", out, err)
		}
		// Removing the directory from PATH does not matter any more.
		t.Setenv("PATH", "/usr/bin:/bin")
		if p, err := r.LookPath("knock-test-tool"); err != nil || p != bin {
			t.Fatalf("cached LookPath = %q, %v; want %q", p, err, bin)
		}
	})
}

func TestLimitedBufferThroughCopy(t *testing.T) {
	// io.Copy is what os/exec uses: the limit must hold through it.
	b := &limitedBuffer{max: 10}
	n, err := io.Copy(b, strings.NewReader(strings.Repeat("y", 100)))
	if err != nil || n != 100 {
		t.Fatalf("Copy = %d, %v; want all 100 bytes consumed", n, err)
	}
	if b.String() != strings.Repeat("y", 10) || !b.overflow {
		t.Fatalf("kept %q overflow=%v, want 10 bytes and overflow", b.String(), b.overflow)
	}
}

func TestNetnsRunner(t *testing.T) {
	f := new(FakeRunner)
	if r := NetnsRunner(f, ""); r != Runner(f) {
		t.Fatal("an empty namespace must return the inner runner")
	}
	if _, err := NetnsRunner(f, "fw1").Run(context.Background(), []string{"nft", "list", "tables"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"ip netns exec fw1 nft list tables"}; !slices.Equal(f.Calls(), want) {
		t.Fatalf("calls %q, want %q", f.Calls(), want)
	}
	for _, ns := range []string{"../x", "a/b", "-n", ".", "a b", strings.Repeat("x", 256)} {
		if ValidateNetns(ns) == nil {
			t.Errorf("ValidateNetns(%q) accepted", ns)
		}
	}
}

func TestClassifyOnlyFailures(t *testing.T) {
	recognise := func(*CmdError) error { return ErrNotExist }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"exit status 1", &CmdError{ExitCode: 1}, true},
		{"not started", &CmdError{ExitCode: -1, Err: ErrNotFound}, false},
		{"not a command error", errors.New("x"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errors.Is(classify(tc.err, recognise), ErrNotExist); got != tc.want {
				t.Fatalf("classified as not-exist: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "  a  b\tc\n", want: []string{"a", "b", "c"}},
		{in: `a 'b c' "d e"`, want: []string{"a", "b c", "d e"}},
		{in: `'it''s' "say \"hi\"" back\ slash`, want: []string{"its", `say "hi"`, "back slash"}},
		{in: `"\n stays" '\' x""y ''`, want: []string{`\n stays`, `\`, "xy", ""}},
		{in: `$(reboot) ; | & > <`, want: []string{"$(reboot)", ";", "|", "&", ">", "<"}},
		{in: `'open`, err: true},
		{in: `"open`, err: true},
		{in: `a\`, err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := SplitArgs(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("error = %v, want error %v", err, tc.err)
			}
			if !tc.err && !slices.Equal(got, tc.want) {
				t.Fatalf("SplitArgs = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzFormatSplit(f *testing.F) {
	for _, s := range []string{"a", "", "a b", "it's", `"q"`, "knockdaemon 1.2.3.4 tcp 22", ";", "{", "\\"} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		argv := []string{a, b}
		got, err := SplitArgs(FormatArgv(argv))
		if err != nil {
			t.Fatalf("SplitArgs(FormatArgv(%q)): %v", argv, err)
		}
		if !slices.Equal(got, argv) {
			t.Fatalf("round trip of %q gave %q", argv, got)
		}
	})
}

func TestOpeningValidate(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.7")
	for _, tc := range []struct {
		name string
		o    Opening
		ok   bool
	}{
		{"ipv4 tcp", Opening{Addr: a, Proto: "tcp", Port: 22}, true},
		{"ipv6 udp with timeout", Opening{Addr: netip.MustParseAddr("2001:db8::1"), Proto: "udp", Port: 65535, Timeout: time.Minute}, true},
		{"ipv4-mapped", Opening{Addr: netip.MustParseAddr("::ffff:198.51.100.7"), Proto: "tcp", Port: 22}, true},
		{"no address", Opening{Proto: "tcp", Port: 22}, false},
		{"unspecified ipv4", Opening{Addr: netip.IPv4Unspecified(), Proto: "tcp", Port: 22}, false},
		{"unspecified ipv6", Opening{Addr: netip.IPv6Unspecified(), Proto: "tcp", Port: 22}, false},
		{"mapped unspecified", Opening{Addr: netip.MustParseAddr("::ffff:0.0.0.0"), Proto: "tcp", Port: 22}, false},
		{"multicast", Opening{Addr: netip.MustParseAddr("224.0.0.1"), Proto: "udp", Port: 22}, false},
		{"broadcast", Opening{Addr: netip.MustParseAddr("255.255.255.255"), Proto: "udp", Port: 22}, false},
		{"zone", Opening{Addr: netip.MustParseAddr("fe80::1%eth0"), Proto: "tcp", Port: 22}, false},
		{"upper-case proto", Opening{Addr: a, Proto: "TCP", Port: 22}, false},
		{"icmp", Opening{Addr: a, Proto: "icmp", Port: 22}, false},
		{"port 0", Opening{Addr: a, Proto: "tcp"}, false},
		{"negative timeout", Opening{Addr: a, Proto: "tcp", Port: 22, Timeout: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.o.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate(%v) = %v, want ok=%v", tc.o, err, tc.ok)
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		wantName string
		wantErr  string
	}{
		{"iptables defaults", Options{Type: "iptables"}, "iptables", ""},
		{"nftables defaults", Options{Type: "nftables"}, "nftables", ""},
		{"nftables custom", Options{Type: "nftables", Table: "ip6 fw", NftChain: "in", Set: "k"}, "nftables", ""},
		{"ipset", Options{Type: "ipset", Set: "kd"}, "ipset", ""},
		{"ipfw", Options{Type: "ipfw", RuleRange: "100-200"}, "ipfw", ""},
		{"exec", Options{Type: "exec", Open: "/bin/o %IP%", Close: "/bin/c %IP%"}, "exec", ""},
		{"dry-run", Options{Type: "dry-run"}, "dry-run", ""},
		{"dry run of nftables", Options{Type: "nftables", DryRun: true}, "dry-run", ""},
		{"with a namespace", Options{Type: "ipset", Netns: "fw1"}, "ipset", ""},
		{"unknown type", Options{Type: "pf"}, "", `unknown backend "pf"; want one of iptables, nftables, ipset, ipfw, exec, dry-run`},
		{"no type", Options{}, "", "no backend type"},
		{"bad namespace", Options{Type: "iptables", Netns: "../etc"}, "", "invalid network namespace"},
		{"bad chain", Options{Type: "iptables", Chain: "INPUT"}, "", "backend iptables: iptables chain"},
		{"bad table", Options{Type: "nftables", Table: "filter"}, "", "want FAMILY NAME"},
		{"bad range", Options{Type: "ipfw", RuleRange: "9-1"}, "", "rule_range"},
		{"exec without close", Options{Type: "exec", Open: "/bin/o"}, "", "no close template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Runner = new(FakeRunner)
			b, err := New(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Name() != tc.wantName {
				t.Fatalf("Name = %q, want %q", b.Name(), tc.wantName)
			}
		})
	}
}

func TestNewNetnsWrapsCommands(t *testing.T) {
	f := new(FakeRunner)
	b, err := New(Options{Type: "ipset", Netns: "fw1", Runner: f})
	if err != nil {
		t.Fatal(err)
	}
	must(t, "close", b.Close(context.Background(), v4))
	if want := []string{"ip netns exec fw1 ipset -exist del knockdaemon 198.51.100.7,tcp:22"}; !slices.Equal(f.Calls(), want) {
		t.Fatalf("calls %q, want %q", f.Calls(), want)
	}
}
