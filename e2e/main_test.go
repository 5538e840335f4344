// Package e2e is knockdaemon's end-to-end suite: a knock from one network
// namespace opens a port in another through the real kernel, a real
// firewall (iptables, ip6tables, nftables, ipset) and a real kernel log
// (/dev/kmsg, an rsyslogd-written kern.log, a pipe on stdin), with the
// real knockdaemon and knockclient binaries.
//
// The daemon runs on the host, reads the host's kernel log (netfilter
// LOG lines from inside namespaces reach it through nf_log_all_netns) and
// runs its firewall commands inside the server namespace ([backend]
// netns). The client knocks from a client namespace as the unprivileged
// user nobody. Every test has its own namespaces and its own LOG prefix,
// so it can run beside other packages' kernel tests. Tests need root; under
// CI=true a test that cannot run fails instead of skipping.
package e2e

import (
	"testing"

	"github.com/knockdaemon/knock/internal/testbin"
)

// bins are the programs under test, built once per run into a directory
// that the user nobody can read, so the client can run unprivileged.
var bins struct {
	daemon   string
	client   string
	listener string
	err      error // why they could not be built
}

// TestMain builds the programs once. With -race they are race-built too: a
// data race in the daemon during the suite is a failure (see
// testbin.Daemon.Stop).
func TestMain(m *testing.M) {
	const daemon, client, listener = "github.com/knockdaemon/knock/knockdaemon",
		"github.com/knockdaemon/knock/knockclient", "github.com/knockdaemon/knock/e2e/listener"
	testbin.Main(m, "e2e", raceEnabled, func(paths map[string]string, err error) {
		bins.daemon, bins.client, bins.listener, bins.err = paths[daemon], paths[client], paths[listener], err
	}, daemon, client, listener)
}

// needBinaries fails the test when the programs could not be built.
func needBinaries(t testing.TB) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("cannot build the programs under test: %v", bins.err)
	}
}
