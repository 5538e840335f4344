package bench

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/bench/mixlog"
)

// peers reports whether the peer baselines (knockd, fwknop, fail2ban) are
// wanted: run.sh --peers sets KNOCK_BENCH_PEERS=1.
func peers() bool { return os.Getenv("KNOCK_BENCH_PEERS") == "1" }

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// bin returns the path of the built knockdaemon or knockclient: from
// KNOCK_BENCH_BIN (run.sh builds them once), else built here.
func bin(b testing.TB, name string) string {
	b.Helper()
	binOnce.Do(func() {
		if d := os.Getenv("KNOCK_BENCH_BIN"); d != "" {
			binDir = d
			return
		}
		binDir, binErr = os.MkdirTemp("", "knock-bench-bin-")
		if binErr != nil {
			return
		}
		for _, m := range []string{"knockdaemon", "knockclient"} {
			out, err := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, m), "../"+m).CombinedOutput()
			if err != nil {
				binErr = &buildError{m, err, string(out)}
				return
			}
		}
	})
	if binErr != nil {
		b.Fatal(binErr)
	}
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err != nil {
		b.Fatalf("%s: %v", p, err)
	}
	return p
}

type buildError struct {
	name string
	err  error
	out  string
}

func (e *buildError) Error() string {
	return "go build " + e.name + ": " + e.err.Error() + "\n" + e.out
}

var (
	mixOnce sync.Once
	mixPath string
	mixErr  error
)

// mixLines is the size of the parse benchmark's file (issue 8: 1,000,000).
const mixLines = 1_000_000

// mixFile returns the 1,000,000-line mix (seed 1), written once per run:
// KNOCK_BENCH_MIX names an existing file to reuse (run.sh writes it with
// bench/genlog).
func mixFile(b testing.TB) string {
	b.Helper()
	mixOnce.Do(func() {
		if p := os.Getenv("KNOCK_BENCH_MIX"); p != "" {
			mixPath = p
			return
		}
		var f *os.File
		f, mixErr = os.CreateTemp("", "knock-bench-mix-*.log")
		if mixErr != nil {
			return
		}
		defer f.Close()
		mixPath = f.Name()
		w := bufio.NewWriterSize(f, 1<<20)
		g := mixlog.New(1, "knock: ")
		for i := range mixLines {
			g.Line(w, i)
		}
		mixErr = w.Flush()
	})
	if mixErr != nil {
		b.Fatal(mixErr)
	}
	return mixPath
}

// median of ds (ds is sorted in place).
func median(ds []time.Duration) time.Duration {
	return percentile(ds, 50)
}

// percentile p (0..100) of ds by the nearest-rank method; ds is sorted in
// place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	k := int(p/100*float64(len(ds))+0.999999) - 1
	k = max(0, min(k, len(ds)-1))
	return ds[k]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// procStatus reads a "VmRSS:"/"VmHWM:" style field of /proc/PID/status in
// bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n * 1024, err
			}
		}
	}
	return 0, os.ErrNotExist
}
