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
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
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
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	for _, b := range []struct {
		dst *string
		pkg string
	}{
		{&bins.daemon, "github.com/knockdaemon/knock/knockdaemon"},
		{&bins.client, "github.com/knockdaemon/knock/knockclient"},
		{&bins.listener, "github.com/knockdaemon/knock/e2e/listener"},
	} {
		out := filepath.Join(dir, filepath.Base(b.pkg))
		args := []string{"build", "-o", out}
		if raceEnabled {
			// A data race in the daemon during the suite is a failure
			// (see daemonProc.checkExit).
			args = append(args, "-race")
		}
		cmd := exec.Command(goBin, append(args, b.pkg)...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, strings.TrimSpace(string(msg)))
		}
		if err := os.Chmod(out, 0o755); err != nil {
			return err
		}
		*b.dst = out
	}
	return nil
}

// needBinaries fails the test when the programs could not be built.
func needBinaries(t testing.TB) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("cannot build the programs under test: %v", bins.err)
	}
}
