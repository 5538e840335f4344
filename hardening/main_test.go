// Package hardening is knockdaemon's hardening suite (issue 9): hostile
// input, attacks and faults, run against the real knockdaemon binary (and,
// where the firewall is touched, the real kernel inside network namespaces
// made by internal/netnstest). A security product is judged by what it
// survives; every test here asserts what an attacker or a fault must not
// achieve: no opening without a live grant, no grant from forged or replayed
// input, no crash, nothing half-applied.
//
// The binaries are built once per run without the race detector: the
// brute-force and flood tests push millions of lines through them. The
// in-process tests (fake clock) run under -race with the rest of the suite.
//
// Tests need root for namespaces and the firewall; under CI=true a test that
// cannot run fails instead of skipping (netnstest.Unavailable).
package hardening

import (
	"testing"

	"github.com/knockdaemon/knock/internal/testbin"
)

// bins are the programs under test.
var bins struct {
	daemon string
	client string
	flood  string // hardening/floodgen
	err    error
}

// TestMain builds the programs once, without the race detector: the
// brute-force and flood tests push millions of lines through them.
func TestMain(m *testing.M) {
	const daemon, client, flood = "github.com/knockdaemon/knock/knockdaemon",
		"github.com/knockdaemon/knock/knockclient", "github.com/knockdaemon/knock/hardening/floodgen"
	testbin.Main(m, "hardening", false, func(paths map[string]string, err error) {
		bins.daemon, bins.client, bins.flood, bins.err = paths[daemon], paths[client], paths[flood], err
	}, daemon, client, flood)
}

func needBinaries(t testing.TB) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("cannot build the programs under test: %v", bins.err)
	}
}
