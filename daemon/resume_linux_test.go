package daemon

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/logsource"
)

// TestResumeAgeLimitRealKernel: the daemon, in process, reads the real
// /dev/kmsg through OpenSourceOpts with a resume age limit of two
// seconds. Of two knocks logged while it is down, the one older than the
// limit is skipped by the restarted daemon (never replayed, though its
// block is still valid), the fresh one is accepted.
func TestResumeAgeLimitRealKernel(t *testing.T) {
	prefix := "kr" + netnstest.RandHex(3) + ":"
	n := kernelKnockNet(t, prefix)
	srv := n.Client.ServerIP4
	cfg := kmsgConfig(t, t.TempDir(), prefix, "", 2222, 2223)
	key := cipher.Key{Name: "alice", Secret: [32]byte{0x72, 0x65, 0x73}, Mode: cipher.Timed}
	const maxAge = 2 * time.Second

	// run starts a daemon and returns its log and a stop function.
	run := func() (*logBuf, func()) {
		var logs logBuf
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		d, err := New(Options{Config: cfg, Keys: []cipher.Key{key}, Backend: newFakeBackend(), NoControl: true,
			OpenSource: func(resume logsource.Position) (logsource.Source, error) {
				return OpenSourceOpts(cfg.Source, resume, SourceOptions{MaxAge: maxAge, Logger: log})
			},
			Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		stop := runDaemon(t, d, &logs)
		for i := 0; logs.count("event=started") == 0; i++ {
			if i == 100 {
				t.Fatalf("daemon not started:\n%s", logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return &logs, stop
	}
	knock := func(port uint16) {
		ports, err := cipher.Encode(key, cipher.Request{Port: port, Time: 5}, time.Now(), 745)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			_ = netnstest.Dial(n.Client.NS, "tcp4", net.JoinHostPort(srv.String(), strconv.Itoa(int(p))), 200*time.Millisecond)
		}
	}

	_, stop := run()
	stop()
	knock(2222) // will be older than the limit at the restart
	time.Sleep(maxAge + time.Second)
	knock(2223) // fresh
	logs, stop2 := run()
	defer stop2()
	accepted := func(port int) int { return logs.count("event=accepted", "port="+strconv.Itoa(port)) }
	if accepted(2223) != 1 {
		t.Fatalf("the fresh knock logged while the daemon was down was not accepted once:\n%s", logs.String())
	}
	if accepted(2222) != 0 {
		t.Fatalf("a knock older than the resume limit was replayed and accepted")
	}
	if !strings.Contains(logs.String(), "kernel log resumed") || logs.count("too_old=0 ") != 0 {
		t.Errorf("the resume did not report the records it skipped as too old")
	}
}
