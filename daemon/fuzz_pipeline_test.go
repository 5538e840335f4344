package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/rules"
)

// bytesSource emits the lines of one input, stamped one millisecond apart,
// and ends.
type bytesSource struct {
	data []byte
	clk  *clock.Fake
}

func (s bytesSource) Run(ctx context.Context, emit func(logsource.Line)) error {
	for _, l := range bytes.Split(s.data, []byte("\n")) {
		s.clk.Advance(time.Millisecond)
		emit(logsource.Line{Text: l, Received: s.clk.Now()})
	}
	return nil
}

func (bytesSource) String() string { return "fuzz input" }

// FuzzDaemonPipeline runs the whole daemon (parser, prefix and flag
// filter, assembler, decoder, policy, replay cache, grants) over arbitrary
// log input with a key the input cannot know (issue 9): it never panics,
// never opens anything, and every candidate ends accepted or rejected with
// a reason. The seeds are real LOG lines of knock-port hits in the kernel,
// syslog and nftables shapes, enough to form candidates.
func FuzzDaemonPipeline(f *testing.F) {
	line := func(src string, sport, dport int) string {
		return fmt.Sprintf("Nov 21 06:00:00 host kernel: [  488.204357] knock: IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=%s DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0", src, sport, dport)
	}
	var seq bytes.Buffer
	for i := 0; i < 10; i++ {
		fmt.Fprintln(&seq, line("198.18.0.9", 40000+i, 745+i*25))
	}
	f.Add(seq.Bytes())
	f.Add([]byte(line("2001:db8::1", 1, 800) + "\n" + line("198.18.0.9", 1, 800) + "\n" + line("198.18.0.9", 1, 800)))

	dir := f.TempDir()
	c, err := config.Parse("fuzz.toml", []byte(fmt.Sprintf(`
[daemon]
state_file = %q
close_on_exit = true
[source]
prefix = "knock:"
[knock]
udp = true
lockout_failures = 3
[[user]]
name = "alice"
key_file = "/unused"
ports = ["1-65535"]
protocol = "both"
allow_unlimited = true
max_minutes = 254
delegate_to = ["0.0.0.0/0"]
`, filepath.Join(dir, "state.json"))))
	if err != nil {
		f.Fatal(err)
	}
	keys := []cipher.Key{{Name: "alice", Secret: [32]byte{0x6b, 0x6e, 0x6f, 0x63, 0x6b}, Mode: cipher.Timed}}
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := clock.NewFake(time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC))
		be := &memBackend{open: map[rules.Opening]bool{}}
		// Each run starts without a state file (the fuzz function runs
		// sequentially in each worker process).
		cc := *c
		os.Remove(cc.Daemon.StateFile)
		d, err := daemon.New(daemon.Options{Config: &cc, Keys: keys, Source: bytesSource{data, clk}, Backend: be,
			Clock: clk, NoControl: true})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("the pipeline hangs on this input:\n%s", buf[:runtime.Stack(buf, true)])
		}
		st := d.Status()
		ctr := st.Counters
		var rejected uint64
		for _, n := range ctr.Rejected {
			rejected += n
		}
		if ctr.Accepted != 0 || ctr.Opened != 0 || len(be.snapshot()) != 0 {
			t.Fatalf("input without the key was accepted: %+v", ctr)
		}
		if ctr.Candidates != rejected-ctr.Rejected["lockout"] {
			t.Fatalf("%d candidates, %d rejections with a reason (%v)", ctr.Candidates, rejected, ctr.Rejected)
		}
		if want := uint64(bytes.Count(data, []byte("\n")) + 1); ctr.Lines != want {
			t.Fatalf("%d lines handled, want %d", ctr.Lines, want)
		}
	})
}
