// Package mixlog generates the realistic, deterministic kern.log/syslog
// mix and the knock-port flood of the issue-8 benchmarks (see
// bench/genlog for the command and bench/README.md for the figures).
// The output depends only on the seed and the line number.
package mixlog

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"time"
)

// Gen writes lines of the mix; it is not safe for concurrent use.
type Gen struct {
	r      *rand.Rand
	prefix string
	t      time.Time // syslog time of the current line
	up     float64   // kernel uptime, seconds
	buf    []byte
}

// New returns a generator; prefix is the LOG prefix of the knock hits
// ("knock: ").
func New(seed uint64, prefix string) *Gen {
	return &Gen{
		r:      rand.New(rand.NewPCG(seed, seed^0x6b6e6f636b)),
		prefix: prefix,
		t:      time.Date(2026, 11, 21, 5, 20, 44, 0, time.UTC),
		up:     488.204357,
	}
}

// advance moves the clock on by 0..2 ms, so a million lines span about
// 17 minutes, as on a busy gateway.
func (g *Gen) advance() {
	d := time.Duration(g.r.IntN(2000)) * time.Microsecond
	g.t = g.t.Add(d)
	g.up += d.Seconds()
}

func (g *Gen) head(w *bufio.Writer, tag string) {
	// Debian 12's rsyslog default: RFC 3339 with microseconds.
	g.buf = g.t.AppendFormat(g.buf[:0], "2006-01-02T15:04:05.000000-07:00")
	g.buf = append(g.buf, " gw-edge-01 "...)
	g.buf = append(g.buf, tag...)
	w.Write(g.buf)
}

func (g *Gen) kernHead(w *bufio.Writer) {
	g.head(w, "kernel: ")
	fmt.Fprintf(w, "[%12.6f] ", g.up)
}

// mac is a plausible MAC header: destination, source, ethertype.
func (g *Gen) mac(w *bufio.Writer, v6 bool) {
	et := "08:00"
	if v6 {
		et = "86:dd"
	}
	fmt.Fprintf(w, "MAC=52:54:00:12:34:56:%02x:%02x:%02x:%02x:%02x:%02x:%s",
		g.r.IntN(256)&0xfe, g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), et)
}

// knockHit is a netfilter LOG line of a SYN to a random knock port.
func (g *Gen) knockHit(w *bufio.Writer, src string, v6 bool) {
	g.KnockHit(w, src, 745+g.r.IntN(256), v6)
}

// KnockHit writes a netfilter LOG line of a TCP SYN from src to port dpt,
// stamped with the generator's clock (which it advances).
func (g *Gen) KnockHit(w *bufio.Writer, src string, dpt int, v6 bool) {
	g.advance()
	g.kernHead(w)
	spt := 32768 + g.r.IntN(28232)
	fmt.Fprintf(w, "%sIN=eth0 OUT= ", g.prefix)
	g.mac(w, v6)
	if v6 {
		fmt.Fprintf(w, " SRC=%s DST=2001:0db8:0000:0000:0000:0000:0000:0005 LEN=80 TC=0 HOPLIMIT=%d FLOWLBL=%d PROTO=TCP SPT=%d DPT=%d WINDOW=64800 RES=0x00 SYN URGP=0 \n",
			src, 40+g.r.IntN(25), g.r.IntN(1<<20), spt, dpt)
		return
	}
	fmt.Fprintf(w, " SRC=%s DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=%d ID=%d DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0 \n",
		src, 40+g.r.IntN(25), g.r.IntN(65536), spt, dpt)
}

func (g *Gen) src4() string {
	// Varied sources: a few hundred regular clients and a long tail.
	if g.r.IntN(4) == 0 {
		return fmt.Sprintf("198.51.100.%d", 1+g.r.IntN(254))
	}
	return fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(222), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
}

func (g *Gen) src6() string {
	return fmt.Sprintf("2001:0db8:%04x:%04x:0000:0000:0000:%04x", g.r.IntN(65536), g.r.IntN(65536), 1+g.r.IntN(65535))
}

var services = []struct {
	port  int
	proto string
}{{22, "TCP"}, {23, "TCP"}, {80, "TCP"}, {443, "TCP"}, {445, "TCP"}, {3389, "TCP"}, {5060, "UDP"}, {53, "UDP"}, {123, "UDP"}, {8080, "TCP"}, {1433, "TCP"}, {6379, "TCP"}}

// otherFirewall is a UFW/LOG line for a port outside 745..1000.
func (g *Gen) otherFirewall(w *bufio.Writer) {
	g.kernHead(w)
	s := services[g.r.IntN(len(services))]
	pfx := []string{"[UFW BLOCK] ", "[UFW AUDIT] ", "DROP-IN: "}[g.r.IntN(3)]
	fmt.Fprintf(w, "%sIN=eth0 OUT= ", pfx)
	g.mac(w, false)
	fmt.Fprintf(w, " SRC=%s DST=203.0.113.5 LEN=%d TOS=0x00 PREC=0x00 TTL=%d ID=%d PROTO=%s SPT=%d DPT=%d ",
		g.src4(), 40+g.r.IntN(60), 40+g.r.IntN(25), g.r.IntN(65536), s.proto, 1024+g.r.IntN(64000), s.port)
	if s.proto == "TCP" {
		fmt.Fprintf(w, "WINDOW=%d RES=0x00 SYN URGP=0 \n", 1024+g.r.IntN(64000))
	} else {
		fmt.Fprintf(w, "LEN=%d \n", 8+g.r.IntN(100))
	}
}

var users = []string{"deploy", "root", "alice", "backup", "git", "admin"}

func (g *Gen) noise(w *bufio.Writer) {
	r := g.r
	switch k := r.IntN(100); {
	case k < 18:
		g.head(w, fmt.Sprintf("sshd[%d]: ", 1000+r.IntN(60000)))
		switch r.IntN(3) {
		case 0:
			fmt.Fprintf(w, "Accepted publickey for %s from %s port %d ssh2: ED25519 SHA256:%016x%016x%011x (agent forwarding refused by server policy)\n",
				users[r.IntN(len(users))], g.src4(), 1024+r.IntN(64000), r.Uint64(), r.Uint64(), r.Uint64()>>20)
		case 1:
			fmt.Fprintf(w, "Failed password for invalid user %s from %s port %d ssh2 [preauth] after %d authentication attempts; disconnecting: too many authentication failures\n",
				users[r.IntN(len(users))]+fmt.Sprint(r.IntN(100)), g.src4(), 1024+r.IntN(64000), 1+r.IntN(6))
		default:
			fmt.Fprintf(w, "pam_unix(sshd:session): session closed for user %s; received disconnect from %s port %d:11: disconnected by user after an idle session of the configured length\n",
				users[r.IntN(len(users))], g.src4(), 1024+r.IntN(64000))
		}
	case k < 28:
		g.head(w, fmt.Sprintf("CRON[%d]: ", 1000+r.IntN(60000)))
		fmt.Fprintf(w, "pam_unix(cron:session): session opened for user %s(uid=%d) by (uid=0); running job /etc/cron.d/backup-nightly number %d of the nightly schedule (rsync to backup-02.example.net)\n",
			users[r.IntN(len(users))], r.IntN(2000), r.IntN(10000))
	case k < 40:
		g.head(w, "systemd[1]: ")
		fmt.Fprintf(w, "Started session-%d.scope - Session %d of User %s; the unit has finished starting up with result done after %d ms of activation, with no errors reported by its processes.\n",
			r.IntN(100000), r.IntN(100000), users[r.IntN(len(users))], r.IntN(2000))
	case k < 50:
		g.head(w, fmt.Sprintf("postfix/smtpd[%d]: ", 1000+r.IntN(60000)))
		fmt.Fprintf(w, "connect from mail%d.example.net[%s] with TLSv1.3 cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) client-signature none\n",
			r.IntN(100), g.src4())
	case k < 62:
		g.head(w, fmt.Sprintf("nginx[%d]: ", 1000+r.IntN(60000)))
		fmt.Fprintf(w, "%s - - \"GET /api/v1/status?id=%d&page=%d HTTP/1.1\" %d %d \"-\" \"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\" rt=0.0%02d uct=0.000\n",
			g.src4(), r.IntN(1000000), r.IntN(100), []int{200, 200, 200, 304, 404, 500}[r.IntN(6)], r.IntN(100000), r.IntN(100))
	case k < 68:
		g.head(w, fmt.Sprintf("dhclient[%d]: ", 1000+r.IntN(60000)))
		fmt.Fprintf(w, "DHCPREQUEST for 192.0.2.%d on eth0 to 192.0.2.1 port 67 (xid=0x%08x); renewing the lease before it expires in %d seconds from now (interval %d)\n",
			1+r.IntN(254), r.Uint32(), r.IntN(86400), r.IntN(600))
	case k < 76:
		g.kernHead(w)
		fmt.Fprintf(w, "audit: type=1400 audit(%d.%03d:%d): apparmor=\"DENIED\" operation=\"open\" profile=\"/usr/sbin/ntpd\" name=\"/proc/%d/status\" pid=%d comm=\"ntpd\" requested_mask=\"r\" denied_mask=\"r\" fsuid=%d ouid=0\n",
			g.t.Unix(), r.IntN(1000), r.IntN(100000), r.IntN(65536), r.IntN(65536), r.IntN(1000))
	case k < 82:
		g.kernHead(w)
		fmt.Fprintf(w, "e1000e 0000:00:19.0 eth%d: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx; EEE is disabled on this link partner (slot %d)\n",
			r.IntN(2), r.IntN(16))
	case k < 87:
		g.kernHead(w)
		fmt.Fprintf(w, "TCP: request_sock_TCP: Possible SYN flooding on port %d. Sending cookies.  Check SNMP counters. (net.ipv4.tcp_max_syn_backlog=%d)\n",
			[]int{80, 443, 8080}[r.IntN(3)], 128<<r.IntN(6))
	case k < 92:
		g.head(w, fmt.Sprintf("rsyslogd[%d]: ", 1000+r.IntN(60000)))
		fmt.Fprintf(w, "imuxsock: Acquired UNIX socket '/run/systemd/journal/syslog' (fd %d) from systemd.  [v8.2302.0 try https://www.rsyslog.com/e/%d ]\n",
			r.IntN(10), r.IntN(3000))
	default:
		// Other firewall rules on other ports: these carry DPT= too.
		g.otherFirewall(w)
	}
}

// Line writes the next line of the mix: one in ten (on average) a knock
// hit, the rest noise.
func (g *Gen) Line(w *bufio.Writer, i int) {
	if g.r.IntN(10) == 0 {
		if g.r.IntN(20) == 0 {
			g.knockHit(w, g.src6(), true)
		} else {
			g.knockHit(w, g.src4(), false)
		}
		return
	}
	g.advance()
	g.noise(w)
}

// FloodHit writes the i-th line of a flood: a knock-port hit from one of
// n spoofed sources in 10.0.0.0/8. Scattered (bursty false): the sources
// are visited round-robin in a scattered order, so with n larger than the
// daemon's source table each source is evicted before its next hit and no
// candidate ever forms (the cheap case). Bursty: the sources come in
// groups of 1000 that each send all their hits (lines/n) before the next
// group starts, so every source completes candidates that the daemon must
// decode, reject and finally lock out (the expensive case).
func (g *Gen) FloodHit(w *bufio.Writer, i, lines, n int, bursty bool) {
	var s uint32
	if bursty && n >= 1000 && lines >= n {
		per := lines / n * 1000 // lines of one group
		grp := i / per
		s = uint32(grp*1000+(i*7919)%1000)%uint32(n) + 1
	} else {
		s = uint32(uint64(i)*7919)%uint32(n) + 1
	}
	g.knockHit(w, fmt.Sprintf("10.%d.%d.%d", s>>16, s>>8&255, s&255), false)
}
