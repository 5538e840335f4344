package rules

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Answers of the real tools, as captured on Debian 12 (iptables 1.8.9
// nf_tables, ip6tables, nftables 1.0.6, ipset 7.17).
const (
	xtBadRule     = "iptables: Bad rule (does a matching rule exist in that chain?)."
	xtNoChain     = "iptables: No chain/target/match by that name."
	xtChainExists = "iptables: Chain already exists."
	xtJumpMissing = "iptables v1.8.9 (nf_tables): Chain 'KNOCKDAEMON' does not exist\nTry `iptables -h' or 'iptables --help' for more information."
	nftENOENT     = "Error: Could not process rule: No such file or directory\nlist chain inet filter input\n                        ^^^^^"
	nftEEXIST     = "Error: Could not process rule: File exists\nadd set inet filter knockdaemon { type ipv6_addr . inet_proto . inet_service; flags timeout; }\n                    ^^^"
	ipsetNoSet    = "ipset v7.17: The set with the given name does not exist"
	ipsetInUse    = "ipset v7.17: Set cannot be destroyed: it is in use by a kernel component"
	ipsetSameName = "ipset v7.17: Set cannot be created: set with the same name already exists"
)

var (
	v4   = Opening{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "tcp", Port: 22, Timeout: 90 * time.Second}
	v4u  = Opening{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "udp", Port: 53}
	v6   = Opening{Addr: netip.MustParseAddr("2001:db8::7"), Proto: "tcp", Port: 443, Timeout: 1500 * time.Millisecond}
	v4in = Opening{Addr: netip.MustParseAddr("::ffff:198.51.100.9"), Proto: "tcp", Port: 8080}
)

// opCase is one backend operation against a scripted FakeRunner: the
// exact commands it must run and the error it must return.
type opCase struct {
	name    string
	script  func(f *FakeRunner)
	op      func(ctx context.Context, b Backend) error
	want    []string // exact FormatArgv lines, in order
	wantErr error    // nil: no error; errAny: some error
}

var errAny = errors.New("any error")

func open(o Opening) func(context.Context, Backend) error {
	return func(ctx context.Context, b Backend) error { return b.Open(ctx, o) }
}

func closeOp(o Opening) func(context.Context, Backend) error {
	return func(ctx context.Context, b Backend) error { return b.Close(ctx, o) }
}

func setup(ctx context.Context, b Backend) error    { return b.Setup(ctx) }
func teardown(ctx context.Context, b Backend) error { return b.Teardown(ctx) }
func check(ctx context.Context, b Backend) error    { return b.Check(ctx) }

func runOpCases(t *testing.T, mk func(r Runner) Backend, cases []opCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := new(FakeRunner)
			if tc.script != nil {
				tc.script(f)
			}
			err := tc.op(context.Background(), mk(f))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if got := f.Calls(); !slices.Equal(got, tc.want) {
				t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestFakeRunnerScript(t *testing.T) {
	f := new(FakeRunner)
	f.On("a b", "first", nil).On("a b", "second", nil).Fail("c", 3, "boom")
	ctx := context.Background()
	for _, want := range []string{"first", "second", ""} {
		out, err := f.Run(ctx, []string{"a", "b"})
		if err != nil || string(out) != want {
			t.Fatalf("Run = %q, %v; want %q", out, err, want)
		}
	}
	_, err := f.Run(ctx, []string{"c"})
	var ce *CmdError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Stderr != "boom" || !slices.Equal(ce.Argv, []string{"c"}) {
		t.Fatalf("Run(c) error = %#v", err)
	}
	f.Always("d", "x", nil)
	for range 3 {
		if out, _ := f.Run(ctx, []string{"d"}); string(out) != "x" {
			t.Fatalf("Always answer not repeated: %q", out)
		}
	}
	if got := len(f.Calls()); got != 7 {
		t.Fatalf("recorded %d calls, want 7", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Run(cctx, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

// listCase is one case of a backend's List: what the fake tools answer,
// and the openings (or the error) that must come of it.
type listCase struct {
	name    string
	script  func(f *FakeRunner)
	want    []Opening
	wantErr bool
}

// testList runs each case against the backend mk makes on a fresh fake
// runner. A List that succeeds must have run exactly the commands calls.
func testList(t *testing.T, mk func(Runner) Backend, calls []string, tests []listCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := new(FakeRunner)
			tc.script(f)
			got, err := mk(f).List(context.Background())
			if tc.wantErr {
				if err == nil {
					t.Fatalf("List = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List = %v, want %v", got, tc.want)
			}
			if !slices.Equal(f.Calls(), calls) {
				t.Fatalf("commands %q, want %q", f.Calls(), calls)
			}
		})
	}
}

// must fails the test when err is not nil; what names the step.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// openConcurrently opens n copies of o, on ports base to base+n-1, from n
// goroutines at once, and fails the test if any Open fails.
func openConcurrently(t *testing.T, ctx context.Context, b Backend, o Opening, base uint16, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := o
			p.Port = base + uint16(i)
			errs <- b.Open(ctx, p)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, "concurrent open", err)
	}
}
