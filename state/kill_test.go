package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const killChildEnv = "STATE_TEST_KILL_CHILD"

// TestKillDuringSave kills a process that saves in a loop at random moments
// (SIGKILL, as kill -9 would) and checks after each kill that the file holds
// a complete state, never older than the last one seen, and that a stray
// temp file does not disturb the next start.
func TestKillDuringSave(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		saveForever(path)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.json")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	last := int64(-1)
	strays := 0
	for round := range 15 {
		cmd := exec.Command(exe, "-test.run=^TestKillDuringSave$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill once the child has written at least once, at a random moment.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(r.IntN(20000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()

		var s pos
		if err := Load(path, &s); err != nil {
			t.Fatalf("round %d: after kill -9 Load failed: %v", round, err)
		}
		if s.Version != 1 || s.Offset < last {
			t.Fatalf("round %d: loaded %+v after offset %d", round, s, last)
		}
		last = s.Offset
		if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tempPrefix(path)+"*")); len(m) > 0 {
			strays++
		}
		if err := RemoveStaleTemps(path); err != nil {
			t.Fatal(err)
		}
		assertNoTemps(t, path)
	}
	t.Logf("%d of 15 kills left a temp file behind; last offset %d", strays, last)
	if last <= 0 {
		t.Fatalf("children never got past the first save (last offset %d)", last)
	}
}

// saveForever continues from the offset on disk and saves increasing
// offsets until killed.
func saveForever(path string) {
	var s pos
	if err := Load(path, &s); err != nil && !errors.Is(err, ErrNotFound) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s.Version = 1
	for {
		s.Offset++
		if err := Save(path, s); err != nil {
			fmt.Fprintln(os.Stderr, "save "+strconv.FormatInt(s.Offset, 10)+": "+err.Error())
			os.Exit(2)
		}
	}
}
