package rules

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzListParsers feeds arbitrary tool output to every listing parser: a
// parser never panics, and whatever it returns is an opening Close can act
// on once passed through owned (as every List does).
func FuzzListParsers(f *testing.F) {
	for _, s := range []string{iptablesS4, iptablesS6, nftSet4, nftSet6, nftSetEmpty, nftChainOurs, nftChainEmpty,
		ipsetSave4, ipsetSave6, nftProbeSet(30), "", "{", `{"nftables": [{"set": {"elem": [{"elem": {}}]}}]}`} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("testdata/ipfw_list_*.txt")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		var all []Opening
		all = append(all, parseIPTablesS(out, "KNOCKDAEMON")...)
		if got, err := parseNftSet(out); err == nil {
			all = append(all, got...)
		}
		if got, err := parseIPSetSave(out, "knockdaemon"); err == nil {
			all = append(all, got...)
		}
		for _, r := range parseIPFWList(out, 1, 65534) {
			if r.ours {
				all = append(all, r.o)
			}
		}
		_, _ = parseNftChain(out)
		_ = probeUpdated(out, false)
		for _, o := range owned(all) {
			if err := o.Validate(); err != nil {
				t.Fatalf("owned returned an invalid opening %v: %v", o, err)
			}
		}
	})
}
