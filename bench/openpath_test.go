package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/state"
)

// BenchmarkOpenPath measures, in one run, the pieces that sit between an
// accepted knock and its rule, and the faster ways proposed for them in
// /work/notes/requests-perf.md:
//
//   - state/save: state.Save of a state with 100 replay entries (what the
//     daemon does before opening: temp file, fsync, rename, fsync of the
//     directory), against state/append-dsync: appending one record of the
//     same news to an open O_DSYNC journal in the same directory;
//   - nft/fork: one "nft add element" process per opening (what the
//     nftables backend does), against nft/session: the same command
//     written to one long-lived "nft -e -i" process, waiting for its echo.
//
// Both run in the directory and namespace kinds the daemon uses (a
// directory under /tmp on the root file system; a thread inside a
// network namespace, as the daemon runs there).
func BenchmarkOpenPath(b *testing.B) {
	dir := b.TempDir()
	b.Run("state/save", func(b *testing.B) {
		type st struct {
			Replay map[string]string `json:"replay"`
		}
		s := st{Replay: map[string]string{}}
		for i := range 100 {
			s.Replay[fmt.Sprintf("alice/%016x", i)] = "2026-11-21T06:00:00Z"
		}
		path := filepath.Join(dir, "state.json")
		for b.Loop() {
			if err := state.Save(path, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("state/append-dsync", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(dir, "replay.journal"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		rec := []byte(`{"k":"alice/0123456789abcdef","until":"2026-11-21T06:00:00Z"}` + "\n")
		for b.Loop() {
			if _, err := f.Write(rec); err != nil {
				b.Fatal(err)
			}
		}
	})

	netnstest.Require(b, "nft")
	n := netnstest.New(b)
	netnstest.MustExec(b, n.Server, "nft", "add table inet kb; add set inet kb s { type ipv4_addr . inet_proto . inet_service; flags timeout; }")
	nft, _ := exec.LookPath("nft")
	elem := func(i int) string {
		return fmt.Sprintf("add element inet kb s { 198.18.%d.%d . tcp . %d timeout 60s }", i>>8&255, i&255, 20000+i%1000)
	}
	k := 0
	b.Run("nft/fork", func(b *testing.B) {
		for b.Loop() {
			err := netnstest.Do(n.Server, func() error {
				out, err := exec.Command(nft, elem(k)).CombinedOutput()
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			k++
		}
	})
	b.Run("nft/session", func(b *testing.B) {
		var cmd *exec.Cmd
		var in io.WriteCloser
		var out *bufio.Reader
		err := netnstest.Do(n.Server, func() error {
			cmd = exec.Command(nft, "-e", "-i")
			var err error
			if in, err = cmd.StdinPipe(); err != nil {
				return err
			}
			o, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			cmd.Stderr = cmd.Stdout
			out = bufio.NewReader(o)
			return cmd.Start()
		})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { in.Close(); cmd.Wait() }()
		for b.Loop() {
			if _, err := io.WriteString(in, elem(k)+"\n"); err != nil {
				b.Fatal(err)
			}
			// The echo, then "# new generation N by process P (nft)".
			for {
				line, err := out.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasPrefix(line, "# new generation") {
					break
				}
				if strings.Contains(line, "Error") {
					b.Fatalf("nft: %s", line)
				}
			}
			k++
		}
	})
}
