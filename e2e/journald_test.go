package e2e

import (
	"testing"

	"github.com/knockdaemon/knock/internal/journaldtest"
)

// startJournald runs systemd-journald (reading the real /dev/kmsg) in a
// mount namespace of its own (journaldtest) and returns the command
// prefix that runs a program in that namespace. journald is stopped at
// cleanup, after everything started later in the test.
func startJournald(t *testing.T) (in []string) {
	t.Helper()
	return journaldtest.Start(t).In()
}

// Case 7: the flow through a real systemd-journald, the daemon reading it
// with its journald source (journalctl -k -f): closed before the knock,
// open for the knocker after knockclient knocks, closed again by
// --time 255. The daemon runs in journald's mount namespace, where
// journalctl finds that journal.
func TestSourceJournald(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	in := startJournald(t)
	conf := w.writeConfig(conf{source: "journald"})
	d := w.startDaemonWrapped(in, conf, nil)
	flow(t, w, d, conf)
}
