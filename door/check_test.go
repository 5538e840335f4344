package door

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDoorCheck(t *testing.T) {
	dir := t.TempDir()
	seqs := filepath.Join(dir, "seqs")
	os.WriteFile(seqs, []byte("1000,2000\n"), 0o644)
	used := filepath.Join(dir, "used")
	os.WriteFile(used, []byte("#1000,2000\n"), 0o600)
	script := filepath.Join(dir, "open.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	plain := filepath.Join(dir, "notexec")
	os.WriteFile(plain, []byte("x"), 0o644)

	tests := []struct {
		name     string
		c        Config
		warnings []string
		err      string
	}{
		{"fixed open door", Config{Name: "a", Sequence: "1,2", Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "1s"}, nil, ""},
		{"one-time file readable by others", Config{Name: "a", OneTimeSequences: seqs, Close: &OpenConfig{Ports: []string{"22"}}}, []string{"readable by others"}, ""},
		{"one-time file used up", Config{Name: "a", OneTimeSequences: used, Close: &OpenConfig{Ports: []string{"22"}}}, []string{"no unused sequence"}, ""},
		{"one-time file missing", Config{Name: "a", OneTimeSequences: filepath.Join(dir, "nope"), Close: &OpenConfig{Ports: []string{"22"}}}, nil, "no such file"},
		{"commands present", Config{Name: "a", Sequence: "1,2", StartCommand: script + " %IP%", StopCommand: script}, nil, ""},
		{"start command missing", Config{Name: "a", Sequence: "1,2", StartCommand: "/usr/local/sbin/knock_add -i -c INPUT -f %IP%"}, nil, `door "a": start_command: stat /usr/local/sbin/knock_add`},
		{"stop command not executable", Config{Name: "a", Sequence: "1,2", StartCommand: script, StopCommand: plain}, nil, "stop_command: " + plain + " is not an executable file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := mustDoor(t, tc.c).Check()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Check error %v, want %q", err, tc.err)
			}
			if len(w) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %q", w, tc.warnings)
			}
			for i := range w {
				if !strings.Contains(w[i], tc.warnings[i]) {
					t.Errorf("warning %q, want %q", w[i], tc.warnings[i])
				}
			}
		})
	}
}
