package hardening

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

// TestFileBacklogBurst appends a burst of knocks (well over 64 KiB) to the
// followed file in one write, as a syslog daemon flushing a backlog does:
// every knock is accepted exactly once.
func TestFileBacklogBurst(t *testing.T) {
	e := newEnv(t)
	kern := filepath.Join(e.dir, "kern.log")
	if err := os.WriteFile(kern, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := e.config(cfg{source: "file", path: kern, user: "ports = [\"20000-29999\"]\nmax_minutes = 60\n"})
	p := e.start(conf, nil)
	time.Sleep(300 * time.Millisecond)
	const knocks = 100
	var b strings.Builder
	for k := 0; k < knocks; k++ {
		src := netip.AddrFrom4([4]byte{198, 18, 91, byte(k + 1)})
		for _, l := range e.seqLines(src, cipher.Request{Port: uint16(20000 + k), Time: 1}) {
			b.WriteString(l + "\n")
		}
	}
	f, err := os.OpenFile(kern, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	deadline := time.Now().Add(20 * time.Second)
	for p.Count(map[string]string{"event": "accepted"}) < knocks && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	st := status(t, conf)
	t.Logf("%d bytes in one write: lines read %d, hits %d, accepted %d", b.Len(), st.Counters.Lines, st.Counters.Hits, st.Counters.Accepted)
	if st.Counters.Accepted != knocks || st.Counters.Lines != 8*knocks {
		t.Errorf("accepted %d of %d knocks, read %d of %d lines", st.Counters.Accepted, knocks, st.Counters.Lines, 8*knocks)
	}
}
