// Package testbin builds the project's programs for the suites that run
// them as real processes (e2e, hardening): once per test binary, into a
// directory the unprivileged user nobody can read and execute, so a client
// can be run without root.
package testbin

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Build runs `go build` for each package into dir (made world-readable),
// with the race detector when race is set, and returns the path of each
// program by package path. The binary is named after the package's last
// path element.
func Build(dir string, race bool, pkgs ...string) (map[string]string, error) {
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	paths := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		out := filepath.Join(dir, filepath.Base(pkg))
		args := []string{"build", "-o", out}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command(goBin, append(args, pkg)...)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, strings.TrimSpace(string(msg)))
		}
		if err := os.Chmod(out, 0o755); err != nil {
			return nil, err
		}
		paths[pkg] = out
	}
	return paths, nil
}

// Main is a suite's TestMain: it builds pkgs into a fresh temporary
// directory, hands the paths (or the build error, which the suite's tests
// then report) to use, runs the tests, removes the directory and exits.
// Under `go test -list` (the Makefile's fuzz discovery) nothing is built.
func Main(m *testing.M, suite string, race bool, use func(paths map[string]string, err error), pkgs ...string) {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "knock-"+suite+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", suite, err)
		os.Exit(1)
	}
	use(Build(dir, race, pkgs...))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
