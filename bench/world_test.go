package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/netnstest"
)

// Protected ports of the server namespace: knock i of a run opens
// protBase+i, so that no two requests are the same block (the replay
// cache would refuse the second).
const (
	protBase  = 20000
	protCount = 100
)

// world is a server namespace guarded by the examples/ firewall under a
// LOG prefix of its own, one client namespace, and a key.
type world struct {
	b      *testing.B
	net    *netnstest.Net
	id     string
	prefix string // with its trailing space
	dir    string
	// stateDir holds the daemon's state file: dir (on disk) by default,
	// or a directory on tmpfs (useTmpfsState), where fsync costs nothing.
	stateDir string
	backend  string
	key      cipher.Key
	keyFile  string
}

func newWorld(b *testing.B, backend string) *world {
	b.Helper()
	tools := []string{"iptables", "ip6tables"}
	switch backend {
	case "nftables":
		tools = append(tools, "nft")
	case "ipset":
		tools = append(tools, "ipset")
	}
	netnstest.Require(b, tools...)
	w := &world{b: b, id: netnstest.RandHex(3), backend: backend}
	w.prefix = "kbn" + w.id + ": "
	w.net = netnstest.New(b)
	netnstest.EnableNFLogAllNetns(b)
	var err error
	w.dir, err = os.MkdirTemp("", "knock-bench-"+w.id+"-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(w.dir) })
	w.stateDir = w.dir
	w.firewall()
	var secret [32]byte
	rand.Read(secret[:])
	w.key = cipher.Key{Name: "alice", Secret: secret, Mode: cipher.Timed}
	w.keyFile = filepath.Join(w.dir, "alice.key")
	if err := os.WriteFile(w.keyFile, []byte(base64.StdEncoding.EncodeToString(secret[:])+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	return w
}

// firewall installs the admin's rules of examples/ in the server
// namespace, with this world's prefix and protected ports.
func (w *world) firewall() {
	b := w.b
	ns := w.net.Server
	protected := fmt.Sprintf("%d-%d", protBase, protBase+protCount-1)
	if w.backend == "nftables" {
		text, err := os.ReadFile("../examples/nftables.conf")
		if err != nil {
			b.Fatal(err)
		}
		rules := string(text)
		for _, r := range [][2]string{
			{`"knock: "`, fmt.Sprintf("%q", w.prefix)},
			{"tcp dport { 22 } drop", fmt.Sprintf("tcp dport { %s } drop", protected)},
		} {
			if !strings.Contains(rules, r[0]) {
				b.Fatalf("examples/nftables.conf has no %s to adapt", r[0])
			}
			rules = strings.ReplaceAll(rules, r[0], r[1])
		}
		path := filepath.Join(w.dir, "nftables.conf")
		if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
			b.Fatal(err)
		}
		netnstest.MustExec(b, ns, "nft", "-f", path)
		return
	}
	netnstest.MustExec(b, ns, "env", "PREFIX="+w.prefix,
		"PROTECTED="+strings.ReplaceAll(protected, "-", ":"), "UDP=0", "sh", "../examples/iptables.sh")
}

// useTmpfsState moves the state file to tmpfs (/dev/shm): the same daemon
// without the cost of the durable state writes (two fsyncs each).
func (w *world) useTmpfsState() {
	d, err := os.MkdirTemp("/dev/shm", "knock-bench-"+w.id+"-")
	if err != nil {
		netnstest.Unavailable(w.b, "no tmpfs at /dev/shm: %v", err)
	}
	w.b.Cleanup(func() { os.RemoveAll(d) })
	w.stateDir = d
}

// writeConfig writes the daemon's config: source kmsg, file (path) or
// stdin, the world's backend run directly (the daemon itself runs inside
// the server namespace), JSON log with nanosecond times.
func (w *world) writeConfig(source, path string, maxSources int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[daemon]
state_file = %q
control_socket = %q
close_on_exit = true
log_format = "json"
log_output = "stderr"
log_level = "info"

[source]
type = %q
`, filepath.Join(w.stateDir, "state.json"), filepath.Join(w.dir, "control.sock"), source)
	if path != "" {
		fmt.Fprintf(&b, "path = %q\n", path)
	}
	fmt.Fprintf(&b, "prefix = %q\n\n[knock]\nbase = 745\nsequence_timeout = \"10s\"\nmax_skew = \"60s\"\n", strings.TrimSpace(w.prefix))
	if maxSources > 0 {
		fmt.Fprintf(&b, "max_sources = %d\n", maxSources)
	}
	fmt.Fprintf(&b, "\n[backend]\ntype = %q\n", w.backend)
	switch w.backend {
	case "iptables":
		fmt.Fprintf(&b, "chain = %q\n", "KB"+strings.ToUpper(w.id))
	case "ipset":
		fmt.Fprintf(&b, "chain = %q\nset = %q\n", "KB"+strings.ToUpper(w.id), "kb"+w.id)
	case "nftables":
		fmt.Fprintf(&b, "table = \"inet filter\"\nnft_chain = \"input\"\nset = %q\n", "kb"+w.id)
	}
	fmt.Fprintf(&b, "\n[[user]]\nname = \"alice\"\nkey_file = %q\nmode = \"timed\"\nports = [\"%d-%d\"]\nprotocol = \"tcp\"\nmax_minutes = 60\n",
		w.keyFile, protBase, protBase+protCount-1)
	p := filepath.Join(w.dir, "knockdaemon.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		w.b.Fatal(err)
	}
	return p
}

// event is one line of the daemon's JSON log.
type event struct {
	Time  time.Time `json:"time"`
	Msg   string    `json:"msg"`
	Event string    `json:"event"`
	Port  int       `json:"port"`
	Src   string    `json:"src"`
	Addr  string    `json:"addr"`
	Err   string    `json:"err"`
}

// daemon is a knockdaemon running inside the server namespace.
type daemon struct {
	conf   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	mu     sync.Mutex
	log    []string // every line, for failure messages
	done   chan struct{}
	// rejected counts rejection and lockout lines (not kept).
	rejected atomic.Int64
}

// startDaemon runs knockdaemon -c conf run inside the server namespace
// and waits for "knockdaemon running". It is stopped (SIGTERM, then
// SIGKILL) at cleanup.
func (w *world) startDaemon(conf string, withStdin bool) *daemon {
	b := w.b
	b.Helper()
	cmd := exec.Command("ip", "netns", "exec", w.net.Server, bin(b, "knockdaemon"), "-c", conf, "run")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d := &daemon{conf: conf, cmd: cmd, events: make(chan event, 1<<16), done: make(chan struct{})}
	if withStdin {
		var err error
		if d.stdin, err = cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			// A flood makes hundreds of thousands of rejections: they
			// go to the kept tail of the log only, not to the events
			// the benchmarks wait for.
			rej := strings.Contains(line, `"event":"rejected"`) || strings.Contains(line, `"event":"lockout"`)
			d.mu.Lock()
			if d.log = append(d.log, line); len(d.log) > 400 {
				d.log = append(d.log[:0], d.log[200:]...)
			}
			d.mu.Unlock()
			if rej {
				d.rejected.Add(1)
				continue
			}
			var e event
			if json.Unmarshal([]byte(line), &e) == nil {
				select {
				case d.events <- e:
				default:
				}
			}
		}
	}()
	b.Cleanup(func() {
		if d.stdin != nil {
			d.stdin.Close()
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-d.done
		}
		cmd.Wait()
	})
	// event=started: the source runs (and follows the log, for kmsg and
	// files), so a knock sent now is seen.
	if _, err := d.wait(10*time.Second, func(e event) bool { return e.Event == "started" }); err != nil {
		b.Fatalf("daemon did not start: %v\n%s", err, d.logText())
	}
	return d
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(d.log)
	return strings.Join(d.log[max(0, n-40):], "\n")
}

// wait returns the first event for which ok is true, skipping others.
func (d *daemon) wait(timeout time.Duration, ok func(event) bool) (event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case e := <-d.events:
			if e.Event == "open_failed" {
				return e, fmt.Errorf("open failed: %s", e.Err)
			}
			if ok(e) {
				return e, nil
			}
		case <-d.done:
			return event{}, fmt.Errorf("daemon exited")
		case <-t.C:
			return event{}, fmt.Errorf("timed out after %v", timeout)
		}
	}
}

// sequence is the eight knock ports asking to open port for 1 minute
// for the knock's source, encoded for now.
func (w *world) sequence(port uint16) [8]uint16 {
	s, err := cipher.Encode(w.key, cipher.Request{Port: port, Time: 1}, time.Now(), 745)
	if err != nil {
		w.b.Fatal(err)
	}
	return s
}

// ctx is a context for short commands.
func ctx5() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

var _ = netip.Addr{}
