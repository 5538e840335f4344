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
	"fmt"
	"os"
	"testing"

	"github.com/knockdaemon/knock/internal/testbin"
)

// bins are the programs under test, built once per run into a directory
// that the user nobody can read, so the client can run unprivileged.
var bins struct {
	dir      string
	daemon   string
	client   string
	listener string
	err      error // why they could not be built
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "knock-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bins.dir = dir
		bins.err = buildAll(dir)
		return m.Run()
	}()
	os.Exit(code)
}

func buildAll(dir string) error {
	const daemon, client, listener = "github.com/knockdaemon/knock/knockdaemon",
		"github.com/knockdaemon/knock/knockclient", "github.com/knockdaemon/knock/e2e/listener"
	// With -race, the programs are race-built too: a data race in the
	// daemon during the suite is a failure (see daemonProc.checkExit).
	paths, err := testbin.Build(dir, raceEnabled, daemon, client, listener)
	if err != nil {
		return err
	}
	bins.daemon, bins.client, bins.listener = paths[daemon], paths[client], paths[listener]
	return nil
}

// needBinaries fails the test when the programs could not be built.
func needBinaries(t testing.TB) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("cannot build the programs under test: %v", bins.err)
	}
}
