package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A door's cmd_timeout is exact (grant.Manager.OpenFor), not rounded to
// minutes.
func TestDoorExactDuration(t *testing.T) {
	h := newHarnessExtra(t, "", nil, nil, `
[[door]]
name        = "short"
sequence    = "7001,7003,7002"
open        = { ports = ["22"] }
cmd_timeout = "10s"
`)
	for i, p := range []uint16{7001, 7003, 7002} {
		h.feed(line("198.51.100.30", "TCP", uint16(50000+i), p, "SYN"))
	}
	h.wantOpen("198.51.100.30 tcp/22")
	h.clk.Advance(9 * time.Second)
	h.wantOpen("198.51.100.30 tcp/22")
	h.clk.Advance(time.Second)
	h.wantOpen()
}

// A one-time door opens once per sequence; after the file is used up,
// appending sequences and a reload (SIGHUP) open it again.
func TestDoorOneTimeReload(t *testing.T) {
	dir := t.TempDir()
	seqs := filepath.Join(dir, "ssh_sequences")
	if err := os.WriteFile(seqs, []byte(" 7101,7103,7102\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doors := fmt.Sprintf(`
[[door]]
name               = "ot"
one_time_sequences = %q
open               = { ports = ["22"] }
cmd_timeout        = "1m"
`, seqs)
	h := newHarnessExtra(t, dir, nil, nil, doors)
	knock := func(src string, ports ...uint16) {
		for _, p := range ports {
			h.sport++
			h.feed(line(src, "TCP", h.sport, p, "SYN"))
		}
	}
	knock("198.51.100.40", 7101, 7103, 7102)
	h.wantOpen("198.51.100.40 tcp/22")
	if data, _ := os.ReadFile(seqs); string(data) != "# 7101,7103,7102\n" {
		t.Fatalf("sequence not marked used: %q", data)
	}
	// Replayed from elsewhere: nothing.
	knock("198.51.100.41", 7101, 7103, 7102)
	h.wantOpen("198.51.100.40 tcp/22")

	f, err := os.OpenFile(seqs, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" 7201,7203,7202\n")
	f.Close()
	knock("198.51.100.41", 7201, 7203, 7202)
	h.wantOpen("198.51.100.40 tcp/22") // not before the reload
	if err := h.d.Reload(h.cfg, h.keys); err != nil {
		t.Fatal(err)
	}
	knock("198.51.100.41", 7201, 7203, 7202)
	h.wantOpen("198.51.100.40 tcp/22", "198.51.100.41 tcp/22")

	// A malformed file is reported at reload; the door keeps its state.
	os.WriteFile(seqs, []byte("7301,x\n"), 0o600)
	if err := h.d.Reload(h.cfg, h.keys); err != nil {
		t.Fatal(err)
	}
	if h.log.count("level=ERROR", "one-time sequences not reloaded", "ssh_sequences:1:") != 1 {
		t.Errorf("malformed one-time file not reported at reload:\n%s", h.log)
	}
}
