package rules

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"
)

func mkNFTables(r Runner) Backend {
	b, err := NewNFTables(r, "inet filter", "input", "")
	if err != nil {
		panic(err)
	}
	return b
}

const (
	nftEEXISTElem = "Error: Could not process rule: File exists\ncreate element inet filter knockdaemon { 198.51.100.7 . tcp . 22 timeout 90s }\n                                 ^^^^^^^^^^^^^^^^^^^^^^^^"
	nftRule4      = "insert rule inet filter input ip saddr . meta l4proto . th dport @knockdaemon accept comment '\"knockdaemon knockdaemon\"'"
	nftRule6      = "insert rule inet filter input ip6 saddr . meta l4proto . th dport @knockdaemon6 accept comment '\"knockdaemon knockdaemon6\"'"
)

// nft -j list chain output of nftables 1.0.6 (trimmed to what matters):
// the admin's chain with the daemon's rules in it.
// nftProbe is the timeout-update probe Setup appends to its transaction.
const (
	nftProbe  = " ';' add element inet filter knockdaemon { 192.0.2.0 . 255 . 0 timeout 60s }"
	nftProbe2 = "nft add element inet filter knockdaemon { 192.0.2.0 . 255 . 0 timeout 30s }"
)

// nftProbeSet is "nft -j list set" output holding the probe element with
// the timeout the kernel kept (30: updated by the second add; 60: not).
func nftProbeSet(timeout int) string {
	return `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "knockdaemon", "table": "filter", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 4, "flags": ["timeout"], "elem": [{"elem": {"val": {"concat": ["192.0.2.0", 255, 0]}, "timeout": ` +
		strconv.Itoa(timeout) + `, "expires": 0}}, {"concat": ["198.51.100.8", "udp", 53]}]}}]}`
}

const nftChainEmpty = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}, {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": [{"accept": null}]}}]}`

const nftChainOurs = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 9, "comment": "knockdaemon knockdaemon6", "expr": []}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 8, "comment": "knockdaemon knockdaemon", "expr": []}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 7, "comment": "knockdaemon knockdaemon", "expr": []}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "comment": "ssh", "expr": []}}]}`

func TestNFTablesArgv(t *testing.T) {
	const list = "nft -j list chain inet filter input"
	const el4 = "inet filter knockdaemon { 198.51.100.7 . tcp . 22"
	const el6 = "inet filter knockdaemon6 { 2001:db8::7 . tcp . 443"
	const listSet4 = "nft -j list set inet filter knockdaemon"
	runOpCases(t, mkNFTables, []opCase{
		{
			name:   "setup fresh: sets and both rules in one transaction",
			script: func(f *FakeRunner) { f.On(list, nftChainEmpty, nil) },
			op:     setup,
			want: []string{list, "nft add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " +
				nftRule4 + " ';' add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " + nftRule6 + nftProbe, nftProbe2, listSet4},
		},
		{
			name:   "setup again inserts no rule and removes a duplicate",
			script: func(f *FakeRunner) { f.On(list, nftChainOurs, nil) },
			op:     setup,
			want: []string{list, "nft add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " +
				"delete rule inet filter input handle 7 ';' add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' }" + nftProbe, nftProbe2, listSet4},
		},
		{
			name: "setup on a kernel that updates timeouts: open is then one add, also when present",
			script: func(f *FakeRunner) {
				f.On(list, nftChainOurs, nil).On(listSet4, nftProbeSet(30), nil)
			},
			op: func(ctx context.Context, b Backend) error {
				if err := b.Setup(ctx); err != nil {
					return err
				}
				return b.Open(ctx, v4)
			},
			want: []string{list, "nft add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " +
				"delete rule inet filter input handle 7 ';' add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' }" + nftProbe, nftProbe2, listSet4,
				"nft add element " + el4 + " timeout 90s }"},
		},
		{
			name: "setup on an older kernel: open stays create",
			script: func(f *FakeRunner) {
				f.On(list, nftChainOurs, nil).On(listSet4, nftProbeSet(60), nil)
			},
			op: func(ctx context.Context, b Backend) error {
				if err := b.Setup(ctx); err != nil {
					return err
				}
				return b.Open(ctx, v4)
			},
			want: []string{list, "nft add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " +
				"delete rule inet filter input handle 7 ';' add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' }" + nftProbe, nftProbe2, listSet4,
				"nft create element " + el4 + " timeout 90s }"},
		},
		{
			// The transaction is all Setup changes; a probe that fails
			// after it leaves the create path that every kernel has.
			name: "setup whose probe fails succeeds and keeps create",
			script: func(f *FakeRunner) {
				f.On(list, nftChainOurs, nil).Fail(nftProbe2, 1, "Error: Could not process rule: Operation not permitted")
			},
			op: func(ctx context.Context, b Backend) error {
				b.(*NFTables).addUpdates.Store(true)
				if err := b.Setup(ctx); err != nil {
					return err
				}
				return b.Open(ctx, v4)
			},
			want: []string{list, "nft add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " +
				"delete rule inet filter input handle 7 ';' add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' }" + nftProbe, nftProbe2,
				"nft create element " + el4 + " timeout 90s }"},
		},
		{
			name:    "setup without the admin's chain",
			script:  func(f *FakeRunner) { f.Fail(list, 1, nftENOENT) },
			op:      setup,
			want:    []string{list},
			wantErr: ErrNotExist,
		},
		{
			name: "setup with a set of another type",
			script: func(f *FakeRunner) {
				f.On(list, nftChainOurs, nil).Default = func([]string) ([]byte, error) { return nil, &CmdError{ExitCode: 1, Stderr: nftEEXIST} }
			},
			op: setup,
			want: []string{list, "nft add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' " +
				"delete rule inet filter input handle 7 ';' add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' }" + nftProbe},
			wantErr: ErrExists,
		},
		{
			name: "open ipv4 with timeout: one create",
			op:   open(v4),
			want: []string{"nft create element " + el4 + " timeout 90s }"},
		},
		{
			name:   "open again: create finds it, one atomic add, delete, add refreshes the timeout",
			script: func(f *FakeRunner) { f.Fail("nft create element "+el4+" timeout 90s }", 1, nftEEXISTElem) },
			op:     open(v4),
			want: []string{"nft create element " + el4 + " timeout 90s }",
				"nft add element " + el4 + " } ';' delete element " + el4 + " } ';' add element " + el4 + " timeout 90s }"},
		},
		{
			name: "open ipv6 with a timeout rounded up to whole seconds",
			op:   open(v6),
			want: []string{"nft create element " + el6 + " timeout 2s }"},
		},
		{
			name: "open udp without timeout",
			op:   open(v4u),
			want: []string{"nft create element inet filter knockdaemon { 198.51.100.7 . udp . 53 }"},
		},
		{
			name:    "open without the set",
			script:  func(f *FakeRunner) { f.Fail("nft create element "+el4+" timeout 90s }", 1, nftENOENT) },
			op:      open(v4),
			want:    []string{"nft create element " + el4 + " timeout 90s }"},
			wantErr: ErrNotExist,
		},
		{
			name: "close (present or absent): one atomic add, delete",
			op:   closeOp(v6),
			want: []string{"nft add element " + el6 + " } ';' delete element " + el6 + " }"},
		},
		{
			name:   "close with the set gone (after a teardown) is not an error",
			script: func(f *FakeRunner) { f.Fail("nft add element "+el6+" } ';' delete element "+el6+" }", 1, nftENOENT) },
			op:     closeOp(v6),
			want:   []string{"nft add element " + el6 + " } ';' delete element " + el6 + " }"},
		},
		{
			name: "close fails on an unknown answer",
			script: func(f *FakeRunner) {
				f.Fail("nft add element "+el6+" } ';' delete element "+el6+" }", 1, "Error: Could not process rule: Operation not permitted")
			},
			op:      closeOp(v6),
			want:    []string{"nft add element " + el6 + " } ';' delete element " + el6 + " }"},
			wantErr: errAny,
		},
		{
			name:   "teardown deletes own rules by handle, then the sets",
			script: func(f *FakeRunner) { f.On(list, nftChainOurs, nil) },
			op:     teardown,
			want: []string{list, "nft delete rule inet filter input handle 8 ';' delete rule inet filter input handle 7 ';' delete rule inet filter input handle 9 ';' " +
				"add set inet filter knockdaemon { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' delete set inet filter knockdaemon ';' " +
				"add set inet filter knockdaemon6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' } ';' delete set inet filter knockdaemon6"},
		},
		{
			name:   "teardown without the table",
			script: func(f *FakeRunner) { f.Fail(list, 1, nftENOENT) },
			op:     teardown,
			want:   []string{list},
		},
		{
			name: "check",
			op:   check,
			want: []string{list},
		},
		{
			name:    "check without the chain says so",
			script:  func(f *FakeRunner) { f.Fail(list, 1, nftENOENT) },
			op:      check,
			want:    []string{list},
			wantErr: ErrNotExist,
		},
	})
}

func TestNFTablesFamilies(t *testing.T) {
	ctx := context.Background()
	t.Run("ip table holds only ipv4", func(t *testing.T) {
		f := new(FakeRunner).On("nft -j list chain ip fw in", nftChainEmpty, nil)
		b, err := NewNFTables(f, "ip fw", "in", "kd")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		want := []string{"nft -j list chain ip fw in",
			"nft add set ip fw kd { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' insert rule ip fw in ip saddr . meta l4proto . th dport @kd accept comment '\"knockdaemon kd\"'" +
				" ';' add element ip fw kd { 192.0.2.0 . 255 . 0 timeout 60s }",
			"nft add element ip fw kd { 192.0.2.0 . 255 . 0 timeout 30s }", "nft -j list set ip fw kd"}
		if !slices.Equal(f.Calls(), want) {
			t.Fatalf("commands %q\nwant %q", f.Calls(), want)
		}
		if err := b.Open(ctx, v6); err == nil {
			t.Fatal("an ipv6 opening in an ip table was accepted")
		}
	})
	t.Run("ip6 table holds only ipv6", func(t *testing.T) {
		b, err := NewNFTables(new(FakeRunner), "ip6 fw", "in", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Open(ctx, v4); err == nil {
			t.Fatal("an ipv4 opening in an ip6 table was accepted")
		}
	})
}

func TestNewNFTablesValidation(t *testing.T) {
	for _, tc := range []struct {
		name, table, chain, set string
	}{
		{"one word table", "filter", "input", ""},
		{"bridge family", "bridge filter", "input", ""},
		{"no chain", "inet filter", "", ""},
		{"table with nft syntax", "inet f;flush", "input", ""},
		{"chain with a brace", "inet filter", "in{", ""},
		{"set starting with a digit", "inet filter", "input", "1kd"},
		{"set with a space", "inet filter", "input", "k d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewNFTables(new(FakeRunner), tc.table, tc.chain, tc.set); err == nil {
				t.Fatalf("NewNFTables(%q, %q, %q) accepted", tc.table, tc.chain, tc.set)
			}
		})
	}
}

// nft -j list set output of nftables 1.0.6 on Linux 6.x: elements with a
// timeout are wrapped in "elem", others are bare concatenations.
const nftSet4 = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "knockdaemon", "table": "filter", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 4, "flags": ["timeout"], "elem": [{"elem": {"val": {"concat": ["198.51.100.7", "tcp", 22]}, "timeout": 100, "expires": 99}}, {"concat": ["198.51.100.8", "udp", 53]}, {"concat": ["198.51.100.9", "sctp", 53]}]}}]}`
const nftSet6 = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "knockdaemon6", "table": "filter", "type": ["ipv6_addr", "inet_proto", "inet_service"], "handle": 5, "flags": ["timeout"], "elem": [{"concat": ["2001:db8::7", "tcp", 443]}]}}]}`
const nftSetEmpty = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "knockdaemon6", "table": "filter", "type": ["ipv6_addr", "inet_proto", "inet_service"], "handle": 5, "flags": ["timeout"]}}]}`

func TestNFTablesList(t *testing.T) {
	const l4, l6 = "nft -j list set inet filter knockdaemon", "nft -j list set inet filter knockdaemon6"
	tests := []listCase{
		{
			name:   "elements with and without timeout, foreign protocols skipped",
			script: func(f *FakeRunner) { f.On(l4, nftSet4, nil).On(l6, nftSet6, nil) },
			want: []Opening{
				{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "tcp", Port: 22, Timeout: 99 * time.Second},
				{Addr: netip.MustParseAddr("198.51.100.8"), Proto: "udp", Port: 53},
				{Addr: netip.MustParseAddr("2001:db8::7"), Proto: "tcp", Port: 443},
			},
		},
		{
			name:   "the timeout probe element is not an opening",
			script: func(f *FakeRunner) { f.On(l4, nftProbeSet(30), nil).On(l6, nftSetEmpty, nil) },
			want:   []Opening{{Addr: netip.MustParseAddr("198.51.100.8"), Proto: "udp", Port: 53}},
		},
		{
			name:   "empty and missing sets",
			script: func(f *FakeRunner) { f.Fail(l4, 1, nftENOENT).On(l6, nftSetEmpty, nil) },
		},
		{
			name:    "garbage output is an error",
			script:  func(f *FakeRunner) { f.On(l4, "table inet filter {", nil) },
			wantErr: true,
		},
		{
			name: "an element with a bad port is an error",
			script: func(f *FakeRunner) {
				f.On(l4, `{"nftables": [{"set": {"elem": [{"concat": ["198.51.100.8", "udp", 0]}]}}]}`, nil)
			},
			wantErr: true,
		},
	}
	testList(t, mkNFTables, []string{l4, l6}, tests)
}

func TestRecogniseNftIgnoresNetnsErrors(t *testing.T) {
	// ip netns exec answers a missing namespace with ENOENT too; that is
	// not "the element does not exist".
	e := &CmdError{ExitCode: 1, Stderr: `Cannot open network namespace "x": No such file or directory`}
	if err := classify(e, recogniseNft); errors.Is(err, ErrNotExist) {
		t.Fatal("a missing namespace was taken for a missing element")
	}
}
