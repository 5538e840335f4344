package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "control.sock")

	t.Run("not running", func(t *testing.T) {
		_, err := Call(context.Background(), path, Request{Cmd: "status"})
		if !errors.Is(err, ErrNotRunning) {
			t.Errorf("err = %v, want ErrNotRunning", err)
		}
	})

	// A stale socket (its daemon died) is replaced.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind for the test: %v", err)
	}

	h := newHarness(t, "", nil, nil)
	l, err := listenControl(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.d.serveControl(ctx, l); close(done) }()

	t.Run("a second daemon is refused", func(t *testing.T) {
		if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "another knockdaemon is running") {
			t.Errorf("err = %v", err)
		}
	})

	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 10})
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 8005, Time: 10})
	h.knock(h.keys[alice], "203.0.113.10", cipher.Request{Port: 22, Time: 11})

	t.Run("status", func(t *testing.T) {
		resp, err := Call(context.Background(), path, Request{Cmd: "status"})
		if err != nil {
			t.Fatal(err)
		}
		st := resp.Status
		if st == nil || st.From != "daemon" || len(st.Grants) != 3 || st.Counters.Accepted != 3 || st.Grants[0].Remaining != 600 || st.Grants[2].Remaining != 660 {
			t.Fatalf("status = %+v", st)
		}
	})
	t.Run("revoke one port", func(t *testing.T) {
		resp, err := Call(context.Background(), path, Request{Cmd: "revoke", Addr: "203.0.113.9", Port: 8005})
		if err != nil || len(resp.Revoked) != 1 {
			t.Fatalf("revoke: %v %+v", err, resp)
		}
		h.wantOpen("203.0.113.10 tcp/22", "203.0.113.9 tcp/22")
	})
	t.Run("revoke every port of an address", func(t *testing.T) {
		resp, err := Call(context.Background(), path, Request{Cmd: "revoke", Addr: "::ffff:203.0.113.9"})
		if err != nil || len(resp.Revoked) != 1 {
			t.Fatalf("revoke: %v %+v", err, resp)
		}
		h.wantOpen("203.0.113.10 tcp/22")
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, req := range []Request{{Cmd: "revoke", Addr: "nonsense"}, {Cmd: "reboot"}} {
			if _, err := Call(context.Background(), path, req); err == nil {
				t.Errorf("%+v accepted", req)
			}
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(strings.Repeat("x", 10000) + "\n"))
		buf := make([]byte, 200)
		n, _ := c.Read(buf)
		if !strings.Contains(string(buf[:n]), "request too long") {
			t.Errorf("overlong request answered %q", buf[:n])
		}
	})

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("control server did not stop")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket not removed at stop: %v", err)
	}
}
