// Command floodgen writes the hardening suite's brute-force and flood
// stream to standard output: netfilter LOG lines of random knocks from
// millions of distinct (spoofed) sources, -hits each, with one legitimate
// knock spread through the middle. It is built without the race
// detector so that the stream, not its generator, is what is measured.
// Lines are text only; no packet is sent anywhere.
//
//	floodgen -prefix P -sources N -hits H [-first F] -key FILE -legit ADDR [-deadline D]
//
// On exit it prints "lines L sources S" to standard error.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

func main() {
	prefix := flag.String("prefix", "knock:", "LOG prefix")
	sources := flag.Int("sources", 1000, "flood sources")
	hits := flag.Int("hits", 10, "hits a source sends")
	first := flag.Int("first", 0, "number of the first source (10.0.0.0 + first)")
	keyFile := flag.String("key", "", "key file of the legitimate knock")
	legit := flag.String("legit", "198.18.30.1", "source of the legitimate knock")
	deadline := flag.Duration("deadline", 3*time.Minute, "stop after this long")
	flag.Parse()
	if err := run(*prefix, *sources, *hits, *first, *keyFile, netip.MustParseAddr(*legit), *deadline); err != nil {
		fmt.Fprintln(os.Stderr, "floodgen:", err)
		os.Exit(1)
	}
}

func hit(buf []byte, prefix string, src netip.Addr, sport, dport int) []byte {
	buf = append(buf, prefix...)
	buf = append(buf, " IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC="...)
	buf = src.AppendTo(buf)
	buf = append(buf, " DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT="...)
	buf = strconv.AppendInt(buf, int64(sport), 10)
	buf = append(buf, " DPT="...)
	buf = strconv.AppendInt(buf, int64(dport), 10)
	return append(buf, " WINDOW=64240 RES=0x00 SYN URGP=0\n"...)
}

func run(prefix string, sources, hits, first int, keyFile string, legit netip.Addr, limit time.Duration) error {
	secret, err := cipher.LoadKeyFile(keyFile)
	if err != nil {
		return err
	}
	key := cipher.Key{Name: "alice", Secret: secret, Mode: cipher.Timed}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(limit)
	legitAt := sources / 2
	spread := max(1, min(1000, sources/16))
	var legitPorts []uint16
	var buf []byte
	lines, s := 0, 0
	for ; s < sources; s++ {
		if s == legitAt {
			p, err := cipher.Encode(key, cipher.Request{Port: 22, Time: 1}, time.Now(), 745)
			if err != nil {
				return err
			}
			legitPorts = p[:]
		}
		// The legitimate knocks, spread over the next 8 x spread sources.
		if s >= legitAt && (s-legitAt)%spread == 0 && len(legitPorts) > 0 {
			buf = hit(buf[:0], prefix, legit, 50000+len(legitPorts), int(legitPorts[0]))
			legitPorts = legitPorts[1:]
			if _, err := w.Write(buf); err != nil {
				return err
			}
			lines++
		}
		n := first + s
		src := netip.AddrFrom4([4]byte{10 + byte(n>>24), byte(n >> 16), byte(n >> 8), byte(n)})
		for h := 0; h < hits; h++ {
			buf = hit(buf[:0], prefix, src, 20000+h, 745+rng.IntN(256))
			if _, err := w.Write(buf); err != nil {
				return err
			}
			lines++
		}
		if s%4096 == 0 && time.Now().After(deadline) {
			s++
			break
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lines %d sources %d\n", lines, s)
	return nil
}
