package rules

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestDryRun(t *testing.T) {
	ctx := context.Background()
	// Every backend's dry run prints the commands its real operations run,
	// and nothing reaches the runner.
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{
			name: "iptables",
			opts: Options{Type: "iptables"},
			want: []string{
				"iptables -w -N KNOCKDAEMON", "iptables -w -I INPUT 1 -j KNOCKDAEMON",
				"ip6tables -w -N KNOCKDAEMON", "ip6tables -w -I INPUT 1 -j KNOCKDAEMON",
				"iptables -w -A KNOCKDAEMON " + iptRule4,
				"ip6tables -w -A KNOCKDAEMON " + iptRule6,
				"iptables -w -D KNOCKDAEMON " + iptRule4,
				"iptables -w -D INPUT -j KNOCKDAEMON", "iptables -w -F KNOCKDAEMON", "iptables -w -X KNOCKDAEMON",
				"ip6tables -w -D INPUT -j KNOCKDAEMON", "ip6tables -w -F KNOCKDAEMON", "ip6tables -w -X KNOCKDAEMON",
			},
		},
		{
			name: "dry-run type is iptables, in a namespace",
			opts: Options{Type: "dry-run", Netns: "fw1"},
			want: []string{
				"ip netns exec fw1 iptables -w -N KNOCKDAEMON", "ip netns exec fw1 iptables -w -I INPUT 1 -j KNOCKDAEMON",
				"ip netns exec fw1 ip6tables -w -N KNOCKDAEMON", "ip netns exec fw1 ip6tables -w -I INPUT 1 -j KNOCKDAEMON",
				"ip netns exec fw1 iptables -w -A KNOCKDAEMON " + iptRule4,
				"ip netns exec fw1 ip6tables -w -A KNOCKDAEMON " + iptRule6,
				"ip netns exec fw1 iptables -w -D KNOCKDAEMON " + iptRule4,
				"ip netns exec fw1 iptables -w -D INPUT -j KNOCKDAEMON", "ip netns exec fw1 iptables -w -F KNOCKDAEMON", "ip netns exec fw1 iptables -w -X KNOCKDAEMON",
				"ip netns exec fw1 ip6tables -w -D INPUT -j KNOCKDAEMON", "ip netns exec fw1 ip6tables -w -F KNOCKDAEMON", "ip netns exec fw1 ip6tables -w -X KNOCKDAEMON",
			},
		},
		{
			name: "ipset refreshes on open again",
			opts: Options{Type: "ipset", Set: "kd"},
			want: []string{
				"ipset create kd hash:ip,port family inet timeout 0",
				"iptables -w -I INPUT 1 -m set --match-set kd src,dst -m comment --comment 'knockdaemon ipset kd' -j ACCEPT",
				"ipset create kd6 hash:ip,port family inet6 timeout 0",
				"ip6tables -w -I INPUT 1 -m set --match-set kd6 src,dst -m comment --comment 'knockdaemon ipset kd6' -j ACCEPT",
				"ipset -exist add kd 198.51.100.7,tcp:22 timeout 90",
				"ipset -exist add kd 198.51.100.7,tcp:22 timeout 90",
				"ipset -exist add kd6 2001:db8::7,tcp:443 timeout 2",
				"ipset -exist del kd 198.51.100.7,tcp:22",
				"iptables -w -D INPUT -m set --match-set kd src,dst -m comment --comment 'knockdaemon ipset kd' -j ACCEPT",
				"ipset destroy kd",
				"ip6tables -w -D INPUT -m set --match-set kd6 src,dst -m comment --comment 'knockdaemon ipset kd6' -j ACCEPT",
				"ipset destroy kd6",
			},
		},
		{
			name: "nftables",
			opts: Options{Type: "nftables", Table: "inet fw", NftChain: "in", Set: "k"},
			want: []string{
				"nft add set inet fw k { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' insert rule inet fw in ip saddr . meta l4proto . th dport @k accept comment '\"knockdaemon k\"' ';' " +
					"add set inet fw k6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' } ';' insert rule inet fw in ip6 saddr . meta l4proto . th dport @k6 accept comment '\"knockdaemon k6\"'",
				"nft create element inet fw k { 198.51.100.7 . tcp . 22 timeout 90s }",
				"nft add element inet fw k { 198.51.100.7 . tcp . 22 } ';' delete element inet fw k { 198.51.100.7 . tcp . 22 } ';' add element inet fw k { 198.51.100.7 . tcp . 22 timeout 90s }",
				"nft create element inet fw k6 { 2001:db8::7 . tcp . 443 timeout 2s }",
				"nft add element inet fw k { 198.51.100.7 . tcp . 22 } ';' delete element inet fw k { 198.51.100.7 . tcp . 22 }",
				"nft -j list chain inet fw in",
				"nft add set inet fw k { type ipv4_addr . inet_proto . inet_service ';' flags timeout ';' } ';' delete set inet fw k ';' " +
					"add set inet fw k6 { type ipv6_addr . inet_proto . inet_service ';' flags timeout ';' } ';' delete set inet fw k6",
			},
		},
		{
			name: "ipfw numbers from the range",
			opts: Options{Type: "ipfw", RuleRange: "500-510"},
			want: []string{
				"ipfw -q add 500 allow tcp from 198.51.100.7 to me 22",
				"ipfw -q add 501 allow tcp from 2001:db8::7 to me6 443",
				"ipfw -q delete 500",
				"ipfw list 500-510",
			},
		},
		{
			name: "exec",
			opts: Options{Type: "exec", Open: "/sbin/o %IP% %PORT%", Close: "/sbin/c %IP% %PORT%"},
			want: []string{
				"/sbin/o 198.51.100.7 22", "/sbin/o 198.51.100.7 22", "/sbin/o 2001:db8::7 443", "/sbin/c 198.51.100.7 22",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			f := new(FakeRunner)
			tc.opts.DryRun = tc.opts.Type != "dry-run"
			tc.opts.Output, tc.opts.Runner = &out, f
			b, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if b.Name() != "dry-run" {
				t.Fatalf("Name = %q", b.Name())
			}
			must(t, "check", b.Check(ctx))
			must(t, "setup", b.Setup(ctx))
			must(t, "open", b.Open(ctx, v4))
			must(t, "open again", b.Open(ctx, v4))
			must(t, "open v6", b.Open(ctx, v6))
			must(t, "close", b.Close(ctx, v4))
			got, err := b.List(ctx)
			must(t, "list", err)
			if want := []Opening{v6}; !slices.Equal(got, want) {
				t.Fatalf("List = %v, want %v", got, want)
			}
			// List is sorted: address, protocol, port.
			var sink bytes.Buffer
			d, _ := NewDryRun(&sink, nil, "")
			for _, o := range []Opening{v6, v4u, v4, v4in} {
				must(t, "open", d.Open(ctx, o))
			}
			sorted, _ := d.List(ctx)
			if want := []Opening{v4, v4u, {Addr: netip.MustParseAddr("198.51.100.9"), Proto: "tcp", Port: 8080}, v6}; !slices.Equal(sorted, want) {
				t.Fatalf("List = %v, want %v", sorted, want)
			}
			must(t, "teardown", b.Teardown(ctx))
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if !slices.Equal(lines, tc.want) {
				t.Fatalf("printed:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tc.want, "\n"))
			}
			if calls := f.Calls(); len(calls) != 0 {
				t.Fatalf("dry run ran commands: %q", calls)
			}
		})
	}
}

func TestDryRunCloseAbsent(t *testing.T) {
	// iptables' Close of an absent rule changes nothing, so its dry run
	// prints nothing; nftables' Close always runs its transaction.
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Type: "iptables"}, ""},
		{Options{Type: "nftables"}, "nft add element inet filter knockdaemon { 198.51.100.7 . tcp . 22 } ';' delete element inet filter knockdaemon { 198.51.100.7 . tcp . 22 }\n"},
	} {
		t.Run(tc.opts.Type, func(t *testing.T) {
			var out bytes.Buffer
			tc.opts.DryRun, tc.opts.Output = true, &out
			b, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			must(t, "close", b.Close(context.Background(), v4))
			if out.String() != tc.want {
				t.Fatalf("printed %q, want %q", out.String(), tc.want)
			}
		})
	}
}

func TestNewDryRunRefuses(t *testing.T) {
	d, err := NewDryRun(new(bytes.Buffer), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		w     *bytes.Buffer
		plan  Backend
		netns string
	}{
		{"a dry run of a dry run", new(bytes.Buffer), d, ""},
		{"a backend that cannot be planned", new(bytes.Buffer), foreignBackend{}, ""},
		{"a bad namespace", new(bytes.Buffer), nil, "a/b"},
		{"no writer", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w io.Writer
			if tc.w != nil {
				w = tc.w
			}
			if _, err := NewDryRun(w, tc.plan, tc.netns); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// foreignBackend is a Backend from elsewhere, which DryRun cannot plan.
type foreignBackend struct{ Backend }

func (foreignBackend) Name() string { return "foreign" }

func TestDryRunWriteError(t *testing.T) {
	b, err := NewDryRun(failWriter{}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Open(context.Background(), v4); err == nil {
		t.Fatal("a failing writer was not reported")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
