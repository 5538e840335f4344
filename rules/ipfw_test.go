package rules

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"testing"
)

func mkIPFW(r Runner) Backend {
	b, err := NewIPFW(r, "")
	if err != nil {
		panic(err)
	}
	return b
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// FreeBSD 14's answer to a listing of a range without rules (ipfw2.c).
const ipfwNoRules = "ipfw: no rules in range 10000-10999"

func TestIPFWArgv(t *testing.T) {
	const list = "ipfw list 10000-10999"
	dstport := readTestdata(t, "ipfw_list_dstport.txt")
	legacy := readTestdata(t, "ipfw_list_legacy.txt")
	runOpCases(t, mkIPFW, []opCase{
		{name: "setup creates nothing", op: setup},
		{
			name:   "open into an empty range takes its first number",
			script: func(f *FakeRunner) { f.Fail(list, 69, ipfwNoRules) },
			op:     open(v4),
			want:   []string{list, "ipfw -q add 10000 allow tcp from 198.51.100.7 to me 22"},
		},
		{
			name:   "open ipv6 takes the lowest free number (admin rules in the range count)",
			script: func(f *FakeRunner) { f.On(list, dstport, nil) },
			op:     open(Opening{Addr: netip.MustParseAddr("2001:db8::8"), Proto: "udp", Port: 500}),
			want:   []string{list, "ipfw -q add 10004 allow udp from 2001:db8::8 to me6 500"},
		},
		{
			name:   "open what is already there adds nothing",
			script: func(f *FakeRunner) { f.On(list, dstport, nil) },
			op:     open(v6),
			want:   []string{list},
		},
		{
			name:   "open what is there in the legacy format adds nothing",
			script: func(f *FakeRunner) { f.On(list, legacy, nil) },
			op:     open(v4u),
			want:   []string{list},
		},
		{
			name:    "open into a full range fails",
			script:  func(f *FakeRunner) { f.On(list, "10000 deny ip from any to any\n", nil) },
			op:      func(ctx context.Context, _ Backend) error { return mustIPFW("10000-10000", ctx, v4) },
			wantErr: errAny,
		},
		{
			name:   "close deletes every rule for the opening, nothing else",
			script: func(f *FakeRunner) { f.On(list, dstport, nil) },
			op:     closeOp(v4),
			want:   []string{list, "ipfw -q delete 10000", "ipfw -q delete 10007"},
		},
		{
			name:   "close absent runs no delete",
			script: func(f *FakeRunner) { f.Fail(list, 69, ipfwNoRules) },
			op:     closeOp(v4),
			want:   []string{list},
		},
		{
			name: "close of a rule someone deleted meanwhile is not an error",
			script: func(f *FakeRunner) {
				f.On(list, dstport, nil).Fail("ipfw -q delete 10002", 69, "ipfw: rule 10002 does not exist")
			},
			op:   closeOp(v6),
			want: []string{list, "ipfw -q delete 10002"},
		},
		{
			name:   "teardown deletes only the daemon's rules",
			script: func(f *FakeRunner) { f.On(list, legacy, nil) },
			op:     teardown,
			want:   []string{list, "ipfw -q delete 10000", "ipfw -q delete 10001", "ipfw -q delete 10002"},
		},
		{
			name: "check",
			op:   check,
			want: []string{"ipfw list 65535"},
		},
	})
}

// mustIPFW opens o with a backend on a custom range and a runner that
// lists the range as full.
func mustIPFW(rng string, ctx context.Context, o Opening) error {
	f := new(FakeRunner).On("ipfw list 10000-10000", "10000 deny ip from any to any\n", nil)
	b, err := NewIPFW(f, rng)
	if err != nil {
		return err
	}
	return b.Open(ctx, o)
}

func TestIPFWListFormats(t *testing.T) {
	ssh4 := Opening{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "tcp", Port: 22}
	dns4 := Opening{Addr: netip.MustParseAddr("198.51.100.7"), Proto: "udp", Port: 53}
	web6 := Opening{Addr: netip.MustParseAddr("2001:db8::7"), Proto: "tcp", Port: 443}
	for _, tc := range []struct {
		file string
		want []Opening
	}{
		{"ipfw_list_dstport.txt", []Opening{ssh4, dns4, web6}},
		{"ipfw_list_legacy.txt", []Opening{ssh4, dns4, web6}},
		{"ipfw_list_counters.txt", []Opening{ssh4, web6}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := new(FakeRunner).On("ipfw list 10000-10999", readTestdata(t, tc.file), nil)
			got, err := mkIPFW(f).List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List = %v, want %v", got, tc.want)
			}
			if want := []string{"ipfw list 10000-10999"}; !slices.Equal(f.Calls(), want) {
				t.Fatalf("commands %q, want %q", f.Calls(), want)
			}
		})
	}
	t.Run("numbers in use include foreign rules in the range", func(t *testing.T) {
		rules := parseIPFWList([]byte(readTestdata(t, "ipfw_list_legacy.txt")), 10000, 10999)
		var nums []int
		for _, r := range rules {
			nums = append(nums, r.num)
		}
		if want := []int{10000, 10001, 10002, 10004, 10999}; !slices.Equal(nums, want) {
			t.Fatalf("numbers %v, want %v", nums, want)
		}
	})
}

func TestNewIPFWRange(t *testing.T) {
	for _, tc := range []struct {
		rng string
		ok  bool
	}{
		{"", true}, {"10000-10999", true}, {"1-65534", true}, {" 500 - 600 ", true}, {"7-7", true},
		{"0-10", false}, {"10-65535", false}, {"20-10", false}, {"10000", false}, {"a-b", false}, {"-5-10", false},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			if _, err := NewIPFW(new(FakeRunner), tc.rng); (err == nil) != tc.ok {
				t.Fatalf("NewIPFW(%q) error = %v, want ok=%v", tc.rng, err, tc.ok)
			}
		})
	}
}
