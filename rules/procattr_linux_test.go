package rules

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanHelperEnv makes the test binary act as a daemon that runs one
// long firewall command through ExecRunner (see TestHelperRunsLongCommand).
const orphanHelperEnv = "KNOCK_RULES_ORPHAN_HELPER"

// TestHelperRunsLongCommand is not a test of its own: run by
// TestCommandDiesWithDaemon as a child process, it starts a command that
// writes its pid to the file named in the environment and sleeps.
func TestHelperRunsLongCommand(t *testing.T) {
	pidFile := os.Getenv(orphanHelperEnv)
	if pidFile == "" {
		return
	}
	r := &ExecRunner{Timeout: -1}
	_, err := r.Run(context.Background(), []string{"sh", "-c", "echo $$ > " + pidFile + "; exec sleep 30"})
	t.Fatalf("the command ended while the daemon lived: %v", err)
}

// A command ExecRunner started is in a process group of its own, so a
// kill -9 of the daemon does not reach it; it must die with the daemon all
// the same, or it would change the firewall behind the daemon's successor.
func TestCommandDiesWithDaemon(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skipf("no sh: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	daemon := exec.Command(os.Args[0], "-test.run=^TestHelperRunsLongCommand$", "-test.count=1")
	daemon.Env = append(os.Environ(), orphanHelperEnv+"="+pidFile)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = daemon.Wait(); close(exited) }()
	var pid int
	for i := 0; pid == 0; i++ {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if i == 500 {
			_ = daemon.Process.Kill()
			t.Fatal("the helper's command did not start within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	for i := 0; ; i++ {
		// The command is not our child: once the kernel killed it, its
		// pid is gone (reaped by init) or a zombie on its way there.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		if i == 200 {
			t.Fatalf("the command (pid %d) outlived the killed daemon by 2s: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
