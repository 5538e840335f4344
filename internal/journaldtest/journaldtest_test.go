package journaldtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// TestStartPrivateJournal: a message logged inside the namespace reaches
// the private journal (once), and /run inside the namespace is not the
// host's.
func TestStartPrivateJournal(t *testing.T) {
	netnstest.Require(t, "logger")
	j := Start(t)
	marker := "journaldtest-" + netnstest.RandHex(6)
	if out, err := j.Exec("logger", "-u", "/run/systemd/journal/dev-log", "-t", "journaldtest", marker); err != nil {
		t.Fatalf("logger: %v\n%s", err, out)
	}
	j.WaitCount(t, marker, 1)

	name := "journaldtest-" + netnstest.RandHex(6)
	if out, err := j.Exec("touch", filepath.Join("/run", name)); err != nil {
		t.Fatalf("touch in the namespace: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join("/run", name)); err == nil {
		_ = os.Remove(filepath.Join("/run", name))
		t.Fatalf("/run/%s made inside journald's namespace appeared on the host", name)
	}
	if out, err := j.Exec("ls", "/run"); err != nil || !strings.Contains(out, name) {
		t.Fatalf("ls /run in the namespace: %v\n%s (want %s)", err, out, name)
	}
}
