package rules

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func mkIPTables(r Runner) Backend {
	b, err := NewIPTables(r, "")
	if err != nil {
		panic(err)
	}
	return b
}

const (
	iptRule4 = `-s 198.51.100.7 -p tcp -m tcp --dport 22 -m comment --comment 'knockdaemon 198.51.100.7 tcp 22' -j ACCEPT`
	iptRule6 = `-s 2001:db8::7 -p tcp -m tcp --dport 443 -m comment --comment 'knockdaemon 2001:db8::7 tcp 443' -j ACCEPT`
	iptRuleU = `-s 198.51.100.7 -p udp -m udp --dport 53 -m comment --comment 'knockdaemon 198.51.100.7 udp 53' -j ACCEPT`
	iptRuleM = `-s 198.51.100.9 -p tcp -m tcp --dport 8080 -m comment --comment 'knockdaemon 198.51.100.9 tcp 8080' -j ACCEPT`
)

func TestIPTablesArgv(t *testing.T) {
	runOpCases(t, mkIPTables, []opCase{
		{
			name: "setup fresh",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -C INPUT -j KNOCKDAEMON", 2, xtJumpMissing)
				f.Fail("ip6tables -w -C INPUT -j KNOCKDAEMON", 1, xtBadRule)
			},
			op: setup,
			want: []string{
				"iptables -w -N KNOCKDAEMON",
				"iptables -w -C INPUT -j KNOCKDAEMON",
				"iptables -w -I INPUT 1 -j KNOCKDAEMON",
				"ip6tables -w -N KNOCKDAEMON",
				"ip6tables -w -C INPUT -j KNOCKDAEMON",
				"ip6tables -w -I INPUT 1 -j KNOCKDAEMON",
			},
		},
		{
			name: "setup again changes nothing",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -N KNOCKDAEMON", 1, xtChainExists)
				f.Fail("ip6tables -w -N KNOCKDAEMON", 1, xtChainExists)
			},
			op: setup,
			want: []string{
				"iptables -w -N KNOCKDAEMON",
				"iptables -w -C INPUT -j KNOCKDAEMON",
				"ip6tables -w -N KNOCKDAEMON",
				"ip6tables -w -C INPUT -j KNOCKDAEMON",
			},
		},
		{
			name: "setup fails on an unknown answer",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -N KNOCKDAEMON", 4, "iptables: Permission denied (you must be root).")
			},
			op:      setup,
			want:    []string{"iptables -w -N KNOCKDAEMON"},
			wantErr: errAny,
		},
		{
			// hardening: ip6tables passes Check but fails -N (module
			// missing): the IPv4 jump and chain this call made go again.
			name: "setup failing in the second family removes what it made in the first",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -C INPUT -j KNOCKDAEMON", 2, xtJumpMissing)
				f.Fail("ip6tables -w -N KNOCKDAEMON", 4, "ip6tables: injected failure")
			},
			op: setup,
			want: []string{
				"iptables -w -N KNOCKDAEMON",
				"iptables -w -C INPUT -j KNOCKDAEMON",
				"iptables -w -I INPUT 1 -j KNOCKDAEMON",
				"ip6tables -w -N KNOCKDAEMON",
				"iptables -w -D INPUT -j KNOCKDAEMON",
				"iptables -w -X KNOCKDAEMON",
			},
			wantErr: errAny,
		},
		{
			name: "setup failing half way keeps the chain and jump that were there",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -N KNOCKDAEMON", 1, xtChainExists)
				f.Fail("ip6tables -w -C INPUT -j KNOCKDAEMON", 1, xtBadRule)
				f.Fail("ip6tables -w -I INPUT 1 -j KNOCKDAEMON", 4, "ip6tables: injected failure")
			},
			op: setup,
			want: []string{
				"iptables -w -N KNOCKDAEMON",
				"iptables -w -C INPUT -j KNOCKDAEMON",
				"ip6tables -w -N KNOCKDAEMON",
				"ip6tables -w -C INPUT -j KNOCKDAEMON",
				"ip6tables -w -I INPUT 1 -j KNOCKDAEMON",
				"ip6tables -w -X KNOCKDAEMON",
			},
			wantErr: errAny,
		},
		{
			name:   "open ipv4 tcp",
			script: func(f *FakeRunner) { f.Fail("iptables -w -C KNOCKDAEMON "+iptRule4, 1, xtBadRule) },
			op:     open(v4),
			want:   []string{"iptables -w -C KNOCKDAEMON " + iptRule4, "iptables -w -A KNOCKDAEMON " + iptRule4},
		},
		{
			name: "open again checks and adds nothing",
			op:   open(v4),
			want: []string{"iptables -w -C KNOCKDAEMON " + iptRule4},
		},
		{
			name:   "open ipv4 udp",
			script: func(f *FakeRunner) { f.Fail("iptables -w -C KNOCKDAEMON "+iptRuleU, 1, xtBadRule) },
			op:     open(v4u),
			want:   []string{"iptables -w -C KNOCKDAEMON " + iptRuleU, "iptables -w -A KNOCKDAEMON " + iptRuleU},
		},
		{
			name:   "open ipv6 goes to ip6tables",
			script: func(f *FakeRunner) { f.Fail("ip6tables -w -C KNOCKDAEMON "+iptRule6, 1, xtBadRule) },
			op:     open(v6),
			want:   []string{"ip6tables -w -C KNOCKDAEMON " + iptRule6, "ip6tables -w -A KNOCKDAEMON " + iptRule6},
		},
		{
			name:   "open ipv4-mapped address is ipv4",
			script: func(f *FakeRunner) { f.Fail("iptables -w -C KNOCKDAEMON "+iptRuleM, 1, xtBadRule) },
			op:     open(v4in),
			want:   []string{"iptables -w -C KNOCKDAEMON " + iptRuleM, "iptables -w -A KNOCKDAEMON " + iptRuleM},
		},
		{
			name: "open without the chain fails",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -C KNOCKDAEMON "+iptRule4, 1, xtBadRule).Fail("iptables -w -A KNOCKDAEMON "+iptRule4, 1, xtNoChain)
			},
			op:      open(v4),
			want:    []string{"iptables -w -C KNOCKDAEMON " + iptRule4, "iptables -w -A KNOCKDAEMON " + iptRule4},
			wantErr: ErrNotExist,
		},
		{
			name:    "open the unspecified address is refused before any command",
			op:      open(Opening{Addr: netip.MustParseAddr("0.0.0.0"), Proto: "tcp", Port: 22}),
			wantErr: errAny,
		},
		{
			name: "close deletes until gone",
			script: func(f *FakeRunner) {
				f.On("iptables -w -D KNOCKDAEMON "+iptRule4, "", nil).Fail("iptables -w -D KNOCKDAEMON "+iptRule4, 1, xtBadRule)
			},
			op:   closeOp(v4),
			want: []string{"iptables -w -D KNOCKDAEMON " + iptRule4, "iptables -w -D KNOCKDAEMON " + iptRule4},
		},
		{
			name: "close removes a duplicate too",
			script: func(f *FakeRunner) {
				f.On("ip6tables -w -D KNOCKDAEMON "+iptRule6, "", nil).On("ip6tables -w -D KNOCKDAEMON "+iptRule6, "", nil).
					Fail("ip6tables -w -D KNOCKDAEMON "+iptRule6, 1, xtBadRule)
			},
			op: closeOp(v6),
			want: []string{"ip6tables -w -D KNOCKDAEMON " + iptRule6, "ip6tables -w -D KNOCKDAEMON " + iptRule6,
				"ip6tables -w -D KNOCKDAEMON " + iptRule6},
		},
		{
			name:   "close absent is not an error",
			script: func(f *FakeRunner) { f.Fail("iptables -w -D KNOCKDAEMON "+iptRuleU, 1, xtBadRule) },
			op:     closeOp(v4u),
			want:   []string{"iptables -w -D KNOCKDAEMON " + iptRuleU},
		},
		{
			name:   "close with the chain gone is not an error",
			script: func(f *FakeRunner) { f.Fail("iptables -w -D KNOCKDAEMON "+iptRuleU, 1, xtNoChain) },
			op:     closeOp(v4u),
			want:   []string{"iptables -w -D KNOCKDAEMON " + iptRuleU},
		},
		{
			name: "teardown",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -D INPUT -j KNOCKDAEMON", 1, xtBadRule)
				f.Fail("ip6tables -w -D INPUT -j KNOCKDAEMON", 1, xtBadRule)
			},
			op: teardown,
			want: []string{
				"iptables -w -D INPUT -j KNOCKDAEMON", "iptables -w -F KNOCKDAEMON", "iptables -w -X KNOCKDAEMON",
				"ip6tables -w -D INPUT -j KNOCKDAEMON", "ip6tables -w -F KNOCKDAEMON", "ip6tables -w -X KNOCKDAEMON",
			},
		},
		{
			name: "teardown of nothing",
			script: func(f *FakeRunner) {
				for _, tool := range []string{"iptables", "ip6tables"} {
					f.Fail(tool+" -w -D INPUT -j KNOCKDAEMON", 2, xtJumpMissing)
					f.Fail(tool+" -w -F KNOCKDAEMON", 1, xtNoChain)
					f.Fail(tool+" -w -X KNOCKDAEMON", 1, xtNoChain)
				}
			},
			op: teardown,
			want: []string{
				"iptables -w -D INPUT -j KNOCKDAEMON", "iptables -w -F KNOCKDAEMON", "iptables -w -X KNOCKDAEMON",
				"ip6tables -w -D INPUT -j KNOCKDAEMON", "ip6tables -w -F KNOCKDAEMON", "ip6tables -w -X KNOCKDAEMON",
			},
		},
		{
			name: "check",
			op:   check,
			want: []string{"iptables -w -n -L INPUT", "ip6tables -w -n -L INPUT"},
		},
		{
			name:    "check not installed",
			script:  func(f *FakeRunner) { f.On("iptables -w -n -L INPUT", "", &CmdError{ExitCode: -1, Err: ErrNotFound}) },
			op:      check,
			want:    []string{"iptables -w -n -L INPUT"},
			wantErr: ErrNotFound,
		},
	})
}

// An iptables -S listing as iptables 1.8.9 prints it, with rules that are
// not the daemon's mixed in.
const iptablesS4 = `-N KNOCKDAEMON
-A KNOCKDAEMON -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -m comment --comment "knockdaemon 198.51.100.7 tcp 22" -j ACCEPT
-A KNOCKDAEMON -s 198.51.100.7/32 -p udp -m udp --dport 53 -m comment --comment "knockdaemon 198.51.100.7 udp 53" -j ACCEPT
-A KNOCKDAEMON -s 198.51.100.7/32 -p tcp -m tcp --dport 22 -m comment --comment "knockdaemon 198.51.100.7 tcp 22" -j ACCEPT
-A KNOCKDAEMON -s 203.0.113.0/24 -p tcp -m tcp --dport 22 -m comment --comment "knockdaemon 203.0.113.0 tcp 22" -j ACCEPT
-A KNOCKDAEMON -s 203.0.113.5/32 -p tcp -m tcp --dport 25 -m comment --comment "knockdaemon 203.0.113.5 tcp 22" -j ACCEPT
-A KNOCKDAEMON -s 203.0.113.6/32 -p tcp -m tcp --dport 25 -j ACCEPT
-A KNOCKDAEMON ! -s 203.0.113.7/32 -p tcp -m tcp --dport 25 -m comment --comment "knockdaemon 203.0.113.7 tcp 25" -j ACCEPT
-A KNOCKDAEMON -s 203.0.113.8/32 -p tcp -m tcp --dport 25 -m comment --comment "knockdaemon 203.0.113.8 tcp 25" -j DROP
-A KNOCKDAEMON -s 0.0.0.0/32 -p tcp -m tcp --dport 22 -m comment --comment "knockdaemon 0.0.0.0 tcp 22" -j ACCEPT
-A OTHER -s 203.0.113.9/32 -p tcp -m tcp --dport 25 -m comment --comment "knockdaemon 203.0.113.9 tcp 25" -j ACCEPT
`

const iptablesS6 = `-N KNOCKDAEMON
-A KNOCKDAEMON -s 2001:db8::7/128 -p tcp -m tcp --dport 443 -m comment --comment "knockdaemon 2001:db8::7 tcp 443" -j ACCEPT
-A KNOCKDAEMON -s 2001:db8::/64 -p tcp -m tcp --dport 443 -m comment --comment "knockdaemon 2001:db8:: tcp 443" -j ACCEPT
`

func TestIPTablesList(t *testing.T) {
	tests := []listCase{
		{
			name: "both families, only the daemon's exact rules, duplicates once",
			script: func(f *FakeRunner) {
				f.On("iptables -w -S KNOCKDAEMON", iptablesS4, nil).On("ip6tables -w -S KNOCKDAEMON", iptablesS6, nil)
			},
			want: []Opening{
				{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "tcp", Port: 22},
				{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "udp", Port: 53},
				{Addr: netip.MustParseAddr("2001:db8::7"), Proto: "tcp", Port: 443},
			},
		},
		{
			name: "missing chains hold nothing",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -S KNOCKDAEMON", 1, xtNoChain).Fail("ip6tables -w -S KNOCKDAEMON", 1, xtNoChain)
			},
		},
	}
	testList(t, mkIPTables, []string{"iptables -w -S KNOCKDAEMON", "ip6tables -w -S KNOCKDAEMON"}, tests)
	t.Run("an unknown failure is an error", func(t *testing.T) {
		f := new(FakeRunner).Fail("iptables -w -S KNOCKDAEMON", 1, "iptables v1.8.9 (nf_tables): chain `KNOCKDAEMON' in table `filter' is incompatible, use 'nft' tool.")
		if _, err := mkIPTables(f).List(context.Background()); err == nil || errors.Is(err, ErrNotExist) {
			t.Fatalf("List error = %v, want a plain failure", err)
		}
	})
}

func TestNewIPTablesChainNames(t *testing.T) {
	for _, tc := range []struct {
		chain string
		ok    bool
	}{
		{"", true}, {"KNOCKDAEMON", true}, {"knock-2.v4", true},
		{"INPUT", false}, {"accept", false}, {"-j", false}, {"a b", false},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ12", true}, {"ABCDEFGHIJKLMNOPQRSTUVWXYZ123", false}, {"x;y", false},
	} {
		t.Run(tc.chain, func(t *testing.T) {
			_, err := NewIPTables(new(FakeRunner), tc.chain)
			if (err == nil) != tc.ok {
				t.Fatalf("NewIPTables(%q) error = %v, want ok=%v", tc.chain, err, tc.ok)
			}
		})
	}
}

// statefulXtables is a FakeRunner answer that keeps the rules of the
// daemon's chain like iptables does, so concurrent Opens can be checked
// for duplicates.
type statefulXtables struct {
	mu    sync.Mutex
	rules map[string]int
}

func (s *statefulXtables) answer(argv []string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	spec := strings.Join(argv[3:], " ")
	switch argv[2] {
	case "-C":
		if s.rules[spec] == 0 {
			return nil, &CmdError{Argv: argv, ExitCode: 1, Stderr: xtBadRule}
		}
	case "-A":
		s.rules[spec]++
	case "-D":
		if s.rules[spec] == 0 {
			return nil, &CmdError{Argv: argv, ExitCode: 1, Stderr: xtBadRule}
		}
		s.rules[spec]--
	}
	return nil, nil
}

func TestIPTablesConcurrentOpenNoDuplicates(t *testing.T) {
	st := &statefulXtables{rules: map[string]int{}}
	f := &FakeRunner{Default: st.answer}
	b := mkIPTables(f)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Open(context.Background(), v4); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for spec, n := range st.rules {
		if n != 1 {
			t.Fatalf("rule %q added %d times by concurrent opens, want 1", spec, n)
		}
	}
	if len(st.rules) != 1 {
		t.Fatalf("%d distinct rules, want 1", len(st.rules))
	}
	must(t, "close", b.Close(context.Background(), v4))
	for spec, n := range st.rules {
		if n != 0 {
			t.Fatalf("rule %q still there %d times after close", spec, n)
		}
	}
}

func TestCloseStopsAfterBoundedDeletions(t *testing.T) {
	// A rule that never goes away (a broken or lying tool) must not make
	// Close loop forever.
	f := new(FakeRunner).Always("iptables -w -D KNOCKDAEMON "+iptRule4, "", nil)
	err := mkIPTables(f).Close(context.Background(), v4)
	if err == nil || !strings.Contains(err.Error(), "still present") {
		t.Fatalf("Close = %v, want a 'still present' error", err)
	}
	if n := len(f.Calls()); n != maxDuplicates {
		t.Fatalf("ran %d deletions, want %d", n, maxDuplicates)
	}
}

func TestCheckHints(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		mk   func(r Runner) Backend
		line string
	}{
		{"iptables", mkIPTables, "iptables -w -n -L INPUT"},
		{"ipset", mkIPSet, "ipset version"},
		{"nftables", mkNFTables, "nft -j list chain inet filter input"},
		{"ipfw", mkIPFW, "ipfw list 65535"},
	} {
		t.Run(tc.name+" not usable", func(t *testing.T) {
			f := new(FakeRunner).Fail(tc.line, 4, "Permission denied (you must be root)")
			err := tc.mk(f).Check(ctx)
			if err == nil || !strings.Contains(err.Error(), "not usable") || !strings.Contains(err.Error(), "\nhint: ") {
				t.Fatalf("Check = %v, want 'not usable' with a hint", err)
			}
		})
		t.Run(tc.name+" not installed", func(t *testing.T) {
			f := new(FakeRunner).On(tc.line, "", &CmdError{ExitCode: -1, Err: ErrNotFound})
			err := tc.mk(f).Check(ctx)
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not installed") || !strings.Contains(err.Error(), "\nhint: ") {
				t.Fatalf("Check = %v, want 'not installed' with a hint", err)
			}
		})
	}
}
