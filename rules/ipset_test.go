package rules

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func mkIPSet(r Runner) Backend {
	b, err := NewIPSet(r, "")
	if err != nil {
		panic(err)
	}
	return b
}

func TestIPSetArgv(t *testing.T) {
	const (
		match4  = "INPUT -m set --match-set knockdaemon src,dst -m comment --comment 'knockdaemon ipset knockdaemon' -j ACCEPT"
		match6  = "INPUT -m set --match-set knockdaemon6 src,dst -m comment --comment 'knockdaemon ipset knockdaemon6' -j ACCEPT"
		ins4    = "iptables -w -I INPUT 1 -m set --match-set knockdaemon src,dst -m comment --comment 'knockdaemon ipset knockdaemon' -j ACCEPT"
		ins6    = "ip6tables -w -I INPUT 1 -m set --match-set knockdaemon6 src,dst -m comment --comment 'knockdaemon ipset knockdaemon6' -j ACCEPT"
		create4 = "ipset -exist create knockdaemon hash:ip,port family inet timeout 0"
		create6 = "ipset -exist create knockdaemon6 hash:ip,port family inet6 timeout 0"
		new4    = "ipset create knockdaemon hash:ip,port family inet timeout 0"
		new6    = "ipset create knockdaemon6 hash:ip,port family inet6 timeout 0"
	)
	runOpCases(t, mkIPSet, []opCase{
		{
			name: "setup fresh",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -C "+match4, 1, xtBadRule).Fail("ip6tables -w -C "+match6, 1, xtBadRule)
			},
			op:   setup,
			want: []string{new4, "iptables -w -C " + match4, ins4, new6, "ip6tables -w -C " + match6, ins6},
		},
		{
			name: "setup again adds no rule and checks the sets' type",
			script: func(f *FakeRunner) {
				f.Fail(new4, 1, ipsetSameName).Fail(new6, 1, ipsetSameName)
			},
			op:   setup,
			want: []string{new4, create4, "iptables -w -C " + match4, new6, create6, "ip6tables -w -C " + match6},
		},
		{
			name:    "setup with a set of another type",
			script:  func(f *FakeRunner) { f.Fail(new4, 1, ipsetSameName).Fail(create4, 1, ipsetSameName) },
			op:      setup,
			want:    []string{new4, create4},
			wantErr: ErrExists,
		},
		{
			name: "setup failing half way removes the sets and rules it made, in reverse",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -C "+match4, 1, xtBadRule).Fail("ip6tables -w -C "+match6, 1, xtBadRule).
					Fail(ins6, 4, "ip6tables: injected failure")
			},
			op: setup,
			want: []string{new4, "iptables -w -C " + match4, ins4, new6, "ip6tables -w -C " + match6, ins6,
				"ipset destroy knockdaemon6", "iptables -w -D " + match4, "ipset destroy knockdaemon"},
			wantErr: errAny,
		},
		{
			name: "setup failing half way keeps what existed before",
			script: func(f *FakeRunner) {
				f.Fail(new4, 1, ipsetSameName).Fail(new6, 1, "ipset v7.17: Kernel error received: Operation not permitted")
			},
			op:      setup,
			want:    []string{new4, create4, "iptables -w -C " + match4, new6},
			wantErr: errAny,
		},
		{
			name: "open ipv4 tcp with timeout: one command",
			op:   open(v4),
			want: []string{"ipset -exist add knockdaemon 198.51.100.7,tcp:22 timeout 90"},
		},
		{
			name: "open again refreshes with the same command",
			op: func(ctx context.Context, b Backend) error {
				if err := b.Open(ctx, v4); err != nil {
					return err
				}
				return b.Open(ctx, v4)
			},
			want: []string{"ipset -exist add knockdaemon 198.51.100.7,tcp:22 timeout 90", "ipset -exist add knockdaemon 198.51.100.7,tcp:22 timeout 90"},
		},
		{
			name: "open udp without timeout is permanent",
			op:   open(v4u),
			want: []string{"ipset -exist add knockdaemon 198.51.100.7,udp:53 timeout 0"},
		},
		{
			name: "open ipv6 rounds the timeout up",
			op:   open(v6),
			want: []string{"ipset -exist add knockdaemon6 2001:db8::7,tcp:443 timeout 2"},
		},
		{
			name:    "open beyond ipset's longest timeout is refused",
			op:      open(Opening{Addr: v4.Addr, Proto: "tcp", Port: 22, Timeout: 25 * 24 * time.Hour}),
			wantErr: errAny,
		},
		{
			name: "open without the set",
			script: func(f *FakeRunner) {
				f.Fail("ipset -exist add knockdaemon 198.51.100.7,udp:53 timeout 0", 1, ipsetNoSet)
			},
			op:      open(v4u),
			want:    []string{"ipset -exist add knockdaemon 198.51.100.7,udp:53 timeout 0"},
			wantErr: ErrNotExist,
		},
		{
			name: "close (present or absent): one command",
			op:   closeOp(v6),
			want: []string{"ipset -exist del knockdaemon6 2001:db8::7,tcp:443"},
		},
		{
			name:   "close with the set gone (after a teardown) is not an error",
			script: func(f *FakeRunner) { f.Fail("ipset -exist del knockdaemon 198.51.100.7,tcp:22", 1, ipsetNoSet) },
			op:     closeOp(v4),
			want:   []string{"ipset -exist del knockdaemon 198.51.100.7,tcp:22"},
		},
		{
			name: "teardown",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -D "+match4, 1, xtBadRule).Fail("ip6tables -w -D "+match6, 1, xtBadRule)
			},
			op: teardown,
			want: []string{"iptables -w -D " + match4, "ipset destroy knockdaemon",
				"ip6tables -w -D " + match6, "ipset destroy knockdaemon6"},
		},
		{
			name: "teardown retries a set still in use",
			script: func(f *FakeRunner) {
				f.Fail("iptables -w -D "+match4, 2, "iptables v1.8.9 (nf_tables): Set knockdaemon doesn't exist.")
				f.Fail("ipset destroy knockdaemon", 1, ipsetInUse)
				f.Fail("ip6tables -w -D "+match6, 1, xtBadRule)
				f.Fail("ipset destroy knockdaemon6", 1, ipsetNoSet)
			},
			op: teardown,
			want: []string{"iptables -w -D " + match4, "ipset destroy knockdaemon", "ipset destroy knockdaemon",
				"ip6tables -w -D " + match6, "ipset destroy knockdaemon6"},
		},
		{
			name: "check",
			op:   check,
			want: []string{"ipset version", "iptables -w -n -L INPUT", "ip6tables -w -n -L INPUT"},
		},
	})
}

// ipset list SET -output save, as ipset 7.17 prints it.
const ipsetSave4 = `create knockdaemon hash:ip,port family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x08406422
add knockdaemon 198.51.100.7,udp:53 timeout 0
add knockdaemon 198.51.100.7,tcp:22 timeout 29
add knockdaemon 198.51.100.8,sctp:22 timeout 0
`
const ipsetSave6 = `create knockdaemon6 hash:ip,port family inet6 hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x6994dbd2
add knockdaemon6 2001:db8::7,tcp:443 timeout 100
`

func TestIPSetList(t *testing.T) {
	const l4, l6 = "ipset list knockdaemon -output save", "ipset list knockdaemon6 -output save"
	tests := []listCase{
		{
			name:   "both sets with timeouts, foreign protocols skipped",
			script: func(f *FakeRunner) { f.On(l4, ipsetSave4, nil).On(l6, ipsetSave6, nil) },
			want: []Opening{
				{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "udp", Port: 53},
				{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "tcp", Port: 22, Timeout: 29 * time.Second},
				{Addr: netip.MustParseAddr("2001:db8::7"), Proto: "tcp", Port: 443, Timeout: 100 * time.Second},
			},
		},
		{
			name:   "missing sets hold nothing",
			script: func(f *FakeRunner) { f.Fail(l4, 1, ipsetNoSet).Fail(l6, 1, ipsetNoSet) },
		},
		{
			name:    "a malformed element is an error",
			script:  func(f *FakeRunner) { f.On(l4, "add knockdaemon 198.51.100.7:22\n", nil) },
			wantErr: true,
		},
	}
	testList(t, mkIPSet, []string{l4, l6}, tests)
}

func TestNewIPSetNames(t *testing.T) {
	for _, tc := range []struct {
		set string
		ok  bool
	}{
		{"", true}, {"kd", true}, {"knock-d.1", true},
		{"-exist", false}, {"a b", false}, {"a,b", false}, {"0123456789012345678901234567890", false},
	} {
		t.Run(tc.set, func(t *testing.T) {
			if _, err := NewIPSet(new(FakeRunner), tc.set); (err == nil) != tc.ok {
				t.Fatalf("NewIPSet(%q) error = %v, want ok=%v", tc.set, err, tc.ok)
			}
		})
	}
}
