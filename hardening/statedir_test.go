package hardening

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/rules"
)

// mountTmpfs mounts a small tmpfs on a new directory under the env's dir
// and unmounts it when the test ends.
func (e *env) mountTmpfs(name, size string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "hk"+e.id, dir).CombinedOutput(); err != nil {
		netnstest.Unavailable(e.t, "cannot mount a tmpfs: %v: %s", err, out)
	}
	e.t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestStateDirFaults: the state directory is full (a small tmpfs filled
// up) or read-only (a tmpfs remounted ro). The daemon (fake clock, the exec
// firewall) says so loudly at error level and in status, keeps opening,
// closes on time from memory, and says when the state file is written
// again.
func TestStateDirFaults(t *testing.T) {
	netnstest.Require(t, "mount", "umount")
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		mend   func(t *testing.T, dir string)
	}{
		{"disk full",
			func(t *testing.T, dir string) {
				f, err := os.Create(filepath.Join(dir, "filler"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				buf := bytes.Repeat([]byte{'x'}, 4096)
				for i := 0; i < 100000; i++ {
					if _, err := f.Write(buf); err != nil {
						if !errors.Is(err, syscall.ENOSPC) {
							t.Fatalf("filling the tmpfs: %v", err)
						}
						return
					}
				}
				t.Fatal("the tmpfs never filled up")
			},
			func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "filler")) }},
		{"read-only",
			func(t *testing.T, dir string) {
				// Never remount what is not our own tmpfs (that would be
				// the file system holding it).
				if err := exec.Command("mountpoint", "-q", dir).Run(); err != nil {
					t.Fatalf("%s is not a mount point: %v", dir, err)
				}
				// "busy" while a state write holds a file open: retry.
				for i := 0; ; i++ {
					out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput()
					if err == nil {
						break
					}
					if i == 50 {
						t.Fatalf("remount ro: %v: %s", err, out)
					}
					time.Sleep(20 * time.Millisecond)
				}
			},
			func(t *testing.T, dir string) {
				if out, err := exec.Command("mount", "-o", "remount,rw", dir).CombinedOutput(); err != nil {
					t.Fatalf("remount rw: %v: %s", err, out)
				}
			}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			dir := e.mountTmpfs("state", "256k")
			conf := e.config(cfg{stateFile: filepath.Join(dir, "state.json")})
			be, err := rules.New(rules.Options{Type: "exec", Open: e.dir + "/fw.sh open %IP% %PROTO% %PORT% %MINUTES%",
				Close: e.dir + "/fw.sh close %IP% %PROTO% %PORT%"})
			if err != nil {
				t.Fatal(err)
			}
			ip := e.startInproc(conf, be)
			c.break_(t, dir)

			a, b := addr("198.18.70.1"), addr("198.18.70.2")
			ip.knock(a, cipher.Request{Port: 22, Time: 1})
			ip.clk.Advance(31 * time.Second)
			ip.knock(b, cipher.Request{Port: 22, Time: 1})
			if got := e.fwCount("open"); got != 2 {
				t.Fatalf("%d openings with a broken state directory, want 2: %q", got, e.fwLog())
			}
			loud := ip.log.events(map[string]string{"level": "ERROR", "msg": "cannot write the state file; carrying on from memory and retrying"})
			if len(loud) == 0 {
				t.Errorf("no error-level log line about the state file")
			} else {
				t.Logf("logged: %v", loud[0])
			}
			if st := ip.d.Status(); !st.StateWriteFailing {
				t.Errorf("status does not say that the state file cannot be written")
			}

			// Closes on time from memory.
			ip.clk.Advance(30 * time.Second) // a's expiry
			if got := e.fwLog(); e.fwCount("close") != 1 || !strings.HasPrefix(got[len(got)-1], "close_"+a.String()) {
				t.Errorf("at a's expiry the firewall record is %q, want a closed", got)
			}
			ip.clk.Advance(31 * time.Second) // b's expiry
			if e.fwCount("close") != 2 {
				t.Errorf("at b's expiry the firewall record is %q, want both closed", e.fwLog())
			}
			if st := ip.d.Status(); len(st.Grants) != 0 {
				t.Errorf("grants left: %+v", st.Grants)
			}

			// Mended: the next change is written and the daemon says so.
			c.mend(t, dir)
			ip.clk.Advance(31 * time.Second)
			ip.knock(addr("198.18.70.3"), cipher.Request{Port: 22, Time: 1})
			if len(ip.log.events(map[string]string{"msg": "state file written again"})) == 0 {
				t.Errorf("no log line that the state file is written again")
			}
			if st := ip.d.Status(); st.StateWriteFailing {
				t.Errorf("status still says the state file cannot be written")
			}
			if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
				t.Errorf("no state file after mending: %v", err)
			}
			if tmps, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*")); len(tmps) != 0 {
				t.Errorf("failed writes left temporary files: %q", tmps)
			}
		})
	}
}
