package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkParse1M-2   	       1	5472600830 ns/op	     98472 fail2ban-lines/s	  11749271 grep-lines/s	   7956879 parse-lines/s	        80.80 x-fail2ban	         0.6772 x-grep
--- SKIP: BenchmarkLatency/knockd-iptables
    latency_test.go:1: skipped (run with --peers)
BenchmarkLatency/kmsg-nftables-2         	       1	10905894384 ns/op	         2.712 log-accepted-median-ms	         8.175 median-ms	        17.23 p95-ms	0 lost
--- FAIL: BenchmarkLatency/kmsg-ipset
BenchmarkDecode/Decode/100keys-5windows-2           	   53786	     21880 ns/op	       0 B/op	       0 allocs/op
`

func TestParse(t *testing.T) {
	res, status := parse(strings.NewReader(sample))
	if v := res.get("BenchmarkParse1M", "x-grep"); !v.ok || v.v != 0.6772 {
		t.Errorf("x-grep = %+v", v)
	}
	if v := res.get("BenchmarkLatency/kmsg-nftables", "p95-ms"); !v.ok || v.v != 17.23 {
		t.Errorf("p95 = %+v", v)
	}
	if v := res.get("BenchmarkDecode/Decode/100keys-5windows", "allocs/op"); !v.ok || v.v != 0 {
		t.Errorf("allocs = %+v", v)
	}
	if status["BenchmarkLatency/knockd-iptables"] != "skip" || status["BenchmarkLatency/kmsg-ipset"] != "fail" {
		t.Errorf("status %v", status)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{7956879, "lines/s", "7.96 M lines/s"},
		{98472, "lines/s", "98 k lines/s"},
		{21880, "ns", "21.9 µs"},
		{2289597, "ns", "2.29 ms"},
		{8.175, "ms", "8.18 ms"},
		{0, "", "0"},
	} {
		if got := num(c.v, c.unit); got != c.want {
			t.Errorf("num(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}
