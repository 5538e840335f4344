// Package testbin builds the project's programs for the suites that run
// them as real processes (e2e, hardening): once per test binary, into a
// directory the unprivileged user nobody can read and execute, so a client
// can be run without root.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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
