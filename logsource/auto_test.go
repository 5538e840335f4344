package logsource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
)

func TestAuto(t *testing.T) {
	dir := t.TempDir()
	kern := filepath.Join(dir, "kern.log")
	if err := os.WriteFile(kern, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	noKmsg := filepath.Join(dir, "no-kmsg")
	missing := filepath.Join(dir, "missing.log")
	cases := []struct {
		name    string
		opts    AutoOptions
		kind    string
		path    string
		reasons []string
	}{
		{"kmsg not there, the first existing file", AutoOptions{KmsgPath: noKmsg, Files: []string{missing, kern}},
			"file", kern, []string{noKmsg, missing, kern + " exists"}},
		{"a directory is not a log file", AutoOptions{KmsgPath: noKmsg, Files: []string{dir}, Journalctl: "sh"},
			"journald", "", []string{"not a regular file", "journalctl found at"}},
		{"no kmsg, no file: journalctl", AutoOptions{KmsgPath: noKmsg, Files: []string{missing}, Journalctl: "sh"},
			"journald", "", []string{noKmsg, missing, "journalctl found at"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, c, err := Auto(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != tc.kind || (tc.path != "" && c.Path != tc.path) || src == nil {
				t.Fatalf("choice = %+v (%v), want %s %s", c, src, tc.kind, tc.path)
			}
			for _, r := range tc.reasons {
				if !strings.Contains(c.Reason, r) {
					t.Fatalf("reason %q lacks %q", c.Reason, r)
				}
			}
		})
	}
	t.Run("nothing usable is an error naming every reason", func(t *testing.T) {
		_, _, err := Auto(AutoOptions{KmsgPath: noKmsg, Files: []string{missing}, Journalctl: "knocktest-no-journalctl"})
		if err == nil {
			t.Fatal("no error")
		}
		for _, r := range []string{noKmsg, missing, "knocktest-no-journalctl"} {
			if !strings.Contains(err.Error(), r) {
				t.Fatalf("error %q lacks %q", err, r)
			}
		}
	})
	t.Run("readable kmsg wins", func(t *testing.T) {
		if err := kmsgUsable(DefaultKmsgPath); err != nil {
			netnstest.Unavailable(t, "cannot read %s: %v", DefaultKmsgPath, err)
		}
		src, c, err := Auto(AutoOptions{Files: []string{kern}})
		if err != nil || c.Kind != "kmsg" {
			t.Fatalf("choice = %+v, err %v", c, err)
		}
		if _, ok := src.(*Kmsg); !ok {
			t.Fatalf("source = %T", src)
		}
	})
}
