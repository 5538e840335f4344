package hardening

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/internal/netnstest"
)

// ruleRE picks the address and port out of the backend's ACCEPT rules;
// elemRE out of the nftables set elements (ADDR . PROTO . PORT).
var (
	ruleRE = regexp.MustCompile(`-s (\S+)/(?:32|128) .*--dport (\d+)`)
	elemRE = regexp.MustCompile(`(198\.18\.\d+\.\d+) \. (?:tcp|udp) \. (\d+)`)
)

// kernelOpenings lists the openings the backend made in the namespace, as
// "ADDR PORT": the rules of the iptables chain (both families) or the
// elements of the nftables sets.
func kernelOpenings(t *testing.T, ns, backend, name string) []string {
	t.Helper()
	var out []string
	if backend == "nftables" {
		for _, set := range []string{name, name + "6"} {
			text := netnstest.MustExec(t, ns, "nft", "list", "set", "inet", "filter", set)
			for _, m := range elemRE.FindAllStringSubmatch(text, -1) {
				out = append(out, m[1]+" "+m[2])
			}
		}
		return out
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		text := netnstest.MustExec(t, ns, tool, "-w", "-S", name)
		for _, l := range strings.Split(text, "\n") {
			if m := ruleRE.FindStringSubmatch(l); m != nil {
				out = append(out, m[1]+" "+m[2])
			}
		}
	}
	return out
}

// TestKill9DuringKnocksAndCloses kills the daemon with SIGKILL at random
// moments while knocks and explicit closes stream in (real iptables, and
// nftables with its long-lived nft child, in a namespace), restarts it,
// and repeats. Afterwards every opening in the kernel belongs to a live
// grant, every live grant closes on time, and the state file loaded after
// every crash.
func TestKill9DuringKnocksAndCloses(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"iptables", "nftables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testKill9(t, backend)
		})
	}
}

func testKill9(t *testing.T, backend string) {
	netnstest.Require(t, "iptables", "ip6tables", "nft")
	e := newEnv(t)
	n := netnstest.New(t)
	chain := "HK" + strings.ToUpper(e.id)
	stateFile := filepath.Join(e.dir, "state.json")
	be := fmt.Sprintf("type = \"iptables\"\nnetns = %q\nchain = %q\n", n.Server, chain)
	name := chain
	if backend == "nftables" {
		name = "hk" + e.id
		netnstest.MustExec(t, n.Server, "nft", "add table inet filter; add chain inet filter input { type filter hook input priority 0; }")
		be = fmt.Sprintf("type = \"nftables\"\nnetns = %q\ntable = \"inet filter\"\nnft_chain = \"input\"\nset = %q\n", n.Server, name)
	}
	// Every knock asks for a port of its own: identical requests in one
	// 30 s window are one block, and the replay cache admits it once.
	conf := e.config(cfg{backend: be, user: "ports = [\"20000-29999\"]\nmax_minutes = 1\n"})
	t.Cleanup(func() {
		netnstest.Exec(n.Server, "sh", "-c", fmt.Sprintf("for t in iptables ip6tables; do $t -w -D INPUT -j %s; $t -w -F %s; $t -w -X %s; done", chain, chain, chain))
	})

	const rounds = 6
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var knocks, closes int
	for r := 0; r < rounds; r++ {
		p := e.start(conf, nil)
		var (
			wg   sync.WaitGroup
			stop = make(chan struct{})
			mu   sync.Mutex
		)
		type opening struct {
			src  netip.Addr
			port uint16
		}
		var opened []opening
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 400; k++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				var o opening
				req := cipher.Request{Time: 1}
				if len(opened) > 0 && rng.IntN(3) == 0 {
					i := rng.IntN(len(opened))
					o = opened[i]
					opened = append(opened[:i], opened[i+1:]...)
					req.Time = cipher.TimeClose
					closes++
				} else {
					o = opening{netip.AddrFrom4([4]byte{198, 18, byte(100 + r), byte(k + 1)}), uint16(20000 + r*1000 + k)}
					opened = append(opened, o)
					knocks++
				}
				src := o.src
				req.Port = o.port
				lines := e.seqLines(src, req)
				gap := time.Duration(5+rng.IntN(40)) * time.Millisecond
				mu.Unlock()
				if _, err := io.WriteString(p.Stdin(), strings.Join(lines, "\n")+"\n"); err != nil {
					return
				}
				time.Sleep(gap)
			}
		}()
		mu.Lock()
		pause := time.Duration(150+rng.IntN(900)) * time.Millisecond
		mu.Unlock()
		time.Sleep(pause)
		p.Kill9()
		close(stop)
		wg.Wait()

		if _, err := daemon.LoadState(stateFile); err != nil {
			t.Errorf("round %d: the state file does not load after kill -9: %v", r, err)
		}
		if _, err := os.Stat(stateFile + ".corrupt"); err == nil {
			t.Errorf("round %d: the daemon found its state file corrupt", r)
		}
		t.Logf("round %d: killed after %d opened events, %d closed", r,
			p.Count(map[string]string{"event": "opened"}), p.Count(map[string]string{"event": "closed"}))
	}

	p := e.start(conf, nil)
	// Every opening in the kernel has a live grant.
	st := status(t, conf)
	live := map[string]time.Time{}
	for _, g := range st.Grants {
		if g.State == "open" {
			live[g.Addr+" "+fmt.Sprint(g.Port)] = g.Expires
		}
	}
	kern := kernelOpenings(t, n.Server, backend, name)
	for _, o := range kern {
		if _, ok := live[o]; !ok {
			t.Errorf("opening %s in the kernel has no live grant (grants %+v)", o, st.Grants)
		}
	}
	var first, last time.Time
	for k, exp := range live {
		if first.IsZero() || exp.Before(first) {
			first = exp
		}
		if exp.IsZero() {
			t.Errorf("grant %s has no expiry", k)
		}
		if exp.After(last) {
			last = exp
		}
	}
	t.Logf("after %d rounds of kill -9 (%d knocks, %d closes sent): %d live grants, %d kernel openings; the last expires at %s",
		rounds, knocks, closes, len(live), len(kern), last.Format(time.TimeOnly))

	// Every live grant closes on time: poll until the last expiry and
	// measure how late each opening leaves the kernel. Grants that expire
	// together are closed one firewall command after another, so a batch
	// of dozens is late by its length (logged); more than maxLate is a
	// failure.
	const maxLate = 10 * time.Second
	var worst time.Duration
	deadline := last.Add(maxLate + 2*time.Second)
	for {
		now := time.Now()
		for _, o := range kernelOpenings(t, n.Server, backend, name) {
			exp, ok := live[o]
			switch {
			case !ok:
				t.Errorf("opening %s appeared without a grant", o)
			case now.Sub(exp) > maxLate:
				t.Errorf("opening %s is still there %v after its expiry", o, now.Sub(exp).Round(time.Second))
			case now.Sub(exp) > worst:
				worst = now.Sub(exp)
			}
		}
		if t.Failed() || now.After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%s: the latest close came at most %v after its expiry (%d grants expired within %v)",
		backend, worst.Round(100*time.Millisecond), len(live), last.Sub(first).Round(time.Second))
	if k := kernelOpenings(t, n.Server, backend, name); len(k) != 0 {
		t.Errorf("openings left behind: %q", k)
	}
	if st := status(t, conf); len(st.Grants) != 0 {
		t.Errorf("grants left: %+v", st.Grants)
	}
	p.Stop()
}
