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
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/knockdaemon/knock/internal/testbin"
)

// bins are the programs under test.
var bins struct {
	dir    string
	daemon string
	client string
	flood  string // hardening/floodgen
	err    error
}

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		// go test -list (the Makefile's fuzz discovery) needs no binaries.
		os.Exit(m.Run())
	}
	code := func() int {
		dir, err := os.MkdirTemp("", "knock-hardening-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "hardening:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bins.dir = dir
		bins.err = build(dir)
		return m.Run()
	}()
	os.Exit(code)
}

// build makes the programs without the race detector: the brute-force and
// flood tests push millions of lines through them.
func build(dir string) error {
	const daemon, client, flood = "github.com/knockdaemon/knock/knockdaemon",
		"github.com/knockdaemon/knock/knockclient", "github.com/knockdaemon/knock/hardening/floodgen"
	paths, err := testbin.Build(dir, false, daemon, client, flood)
	if err != nil {
		return err
	}
	bins.daemon, bins.client, bins.flood = paths[daemon], paths[client], paths[flood]
	return nil
}

func needBinaries(t testing.TB) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("cannot build the programs under test: %v", bins.err)
	}
}
