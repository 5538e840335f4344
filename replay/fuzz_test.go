package replay

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/knockdaemon/knock/internal/clock"
)

// FuzzLoad feeds arbitrary state-file fragments to Load: it never panics,
// and what Entries returns loads back into a new cache unchanged.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`[{"key":"alice","block":"0102030405060708","until":"2023-11-14T22:14:50Z"}]`))
	f.Add([]byte(`[{"key":"","block":"DEADBEEF00000001","until":"9999-12-31T23:59:59.999999999Z"}]`))
	f.Add([]byte(`[{"key":"a","block":"zz","until":"0001-01-01T00:00:00Z"},{"key":"b","block":"0102030405060708","until":"1600-01-01T00:00:00+05:00"}]`))
	f.Add([]byte(`[{"block":"0102030405060708","until":"2023-11-14T22:13:20.000000001Z"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var in []Entry
		if json.Unmarshal(data, &in) != nil {
			return
		}
		c := New(clock.NewFake(t0))
		defer c.Close()
		_ = c.Load(in) // malformed entries are reported, never a panic
		out := c.Entries()
		c2 := New(clock.NewFake(t0))
		defer c2.Close()
		if err := c2.Load(out); err != nil {
			t.Fatalf("Entries did not load back: %v", err)
		}
		if again := c2.Entries(); !reflect.DeepEqual(out, again) {
			t.Fatalf("round trip changed the entries:\n%v\n%v", out, again)
		}
		for _, e := range out {
			var b [8]byte
			copy(b[:], mustHex(t, e.Block))
			if !c2.Seen(e.Key, b, t0) {
				t.Fatalf("entry %+v not seen after the round trip", e)
			}
		}
	})
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b [8]byte
	if len(s) != 16 {
		t.Fatalf("block %q is not 16 hex digits", s)
	}
	for i := range b {
		hi, lo := unhex(s[2*i]), unhex(s[2*i+1])
		if hi < 0 || lo < 0 {
			t.Fatalf("block %q is not hex", s)
		}
		b[i] = byte(hi<<4 | lo)
	}
	return b[:]
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1 // Entries writes lower case only
}
