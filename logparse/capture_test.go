package logparse

// TestLiveCapture makes real netfilter LOG lines in network namespaces
// (iptables, ip6tables and nftables rules with odd prefixes and every LOG
// option, TCP with crafted flags, UDP, ICMP, ICMPv6, IPv4 and IPv6
// fragments), reads them back through /dev/kmsg, dmesg in six output
// styles and a private rsyslogd writing three templates, and checks that
// each line parses to what was sent. The expectations come from the
// traffic itself, never from the parser.
//
// With KNOCK_CAPTURE_WRITE=1 it also rewrites testdata/captured.jsonl,
// the corpus that TestCorpus checks on every run:
//
//	sudo KNOCK_CAPTURE_WRITE=1 go test -run TestLiveCapture ./logparse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/rsyslogtest"
)

// want is the expected outcome for one corpus line.
type want struct {
	Result     string `json:"result"` // hit | not_firewall | malformed | limit
	Kind       string `json:"kind,omitempty"`
	Src        string `json:"src,omitempty"`
	Dst        string `json:"dst,omitempty"`
	Proto      string `json:"proto,omitempty"`
	SrcPort    uint16 `json:"src_port,omitempty"`
	DstPort    uint16 `json:"dst_port,omitempty"`
	Flags      string `json:"flags,omitempty"`
	Prefix     string `json:"prefix,omitempty"`
	In         string `json:"in,omitempty"`
	Out        string `json:"out,omitempty"`
	ICMPType   uint8  `json:"icmp_type,omitempty"`
	ICMPCode   uint8  `json:"icmp_code,omitempty"`
	Fragment   bool   `json:"fragment,omitempty"`
	FromKernel bool   `json:"from_kernel,omitempty"`
	Rule       int    `json:"rule,omitempty"`
	Action     string `json:"action,omitempty"`
}

// corpusLine is one line of testdata/*.jsonl.
type corpusLine struct {
	Line string `json:"line"`
	Via  string `json:"via"`
	Note string `json:"note,omitempty"`
	Want want   `json:"want"`
}

// capCase is one kind of packet and the rule that logs it.
type capCase struct {
	id       string
	prefix   string // without the run tag
	v6       bool
	proto    string // TCP UDP ICMP ICMPv6
	sport    uint16
	dport    uint16
	flags    string // as Flags.String prints them
	icmpType uint8
	fragment bool // logs non-first fragments
	outbound bool // logged on the way out of the client (OUT=)
	rule     []string
	logOpts  []string // after -j LOG
	send     func(t *testing.T, n *netnstest.Net, c *capCase) error
}

const capBase = 40000

func TestLiveCapture(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables", "nft", "dmesg", "rsyslogd", "logger", "hping3")
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	tag := "k" + netnstest.RandHex(2)
	cl := n.Client

	cases := liveCases(tag)
	var nftRules []string
	for i := range cases {
		c := &cases[i]
		c.prefix = tag + c.id + " " + c.prefix
		switch c.rule[0] {
		case "nft":
			nftRules = append(nftRules, fmt.Sprintf(c.rule[1], c.prefix))
		default:
			ns := n.Server
			if c.outbound {
				ns = cl.NS
			}
			argv := append(append([]string{}, c.rule...), "-j", "LOG", "--log-prefix", c.prefix)
			argv = append(argv, c.logOpts...)
			netnstest.MustExec(t, ns, argv...)
		}
	}
	if len(nftRules) > 0 {
		ruleset := "table inet " + tag + " {\n chain pre {\n  type filter hook prerouting priority -300;\n" +
			strings.Join(nftRules, "\n") + "\n }\n}\n"
		f := filepath.Join(t.TempDir(), "nft.conf")
		if err := os.WriteFile(f, []byte(ruleset), 0o644); err != nil {
			t.Fatal(err)
		}
		netnstest.MustExec(t, n.Server, "nft", "-f", f)
	}

	kmsg, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		netnstest.Unavailable(t, "cannot read /dev/kmsg: %v", err)
	}
	defer kmsg.Close()
	if _, err := kmsg.Seek(0, io.SeekEnd); err != nil {
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	rs := startRsyslog(t, tag)

	for i := range cases {
		if err := cases[i].send(t, n, &cases[i]); err != nil {
			t.Fatalf("case %s: send: %v", cases[i].id, err)
		}
	}
	// logger-forged lines for the rsyslog negatives
	forged := tag + "99 IN=eth0 OUT= MAC= SRC=198.51.100.9 DST=203.0.113.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=4242 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0"
	for _, args := range [][]string{
		{"-t", "kernel", "-p", "user.notice"},
		{"-t", "kernel", "-p", "kern.warning"},
		{"-i", "-t", "kernel", "-p", "kern.warning"},
		{"-t", "sshd", "-p", "auth.info"},
	} {
		argv := append([]string{"-u", rs.sock}, append(args, forged)...)
		if out, err := exec.Command("logger", argv...).CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v: %s", argv, err, out)
		}
	}

	byID := map[string]*capCase{}
	for i := range cases {
		byID[cases[i].id] = &cases[i]
	}
	tagRE := regexp.MustCompile(regexp.QuoteMeta(tag) + `([0-9]{2})`)
	var corpus []corpusLine
	add := func(via, line string) {
		m := tagRE.FindStringSubmatch(line)
		if m == nil {
			return
		}
		if m[1] == "99" {
			corpus = append(corpus, corpusLine{Line: line, Via: via, Note: "forged with logger", Want: forgedWant(via, line, tag)})
			return
		}
		c := byID[m[1]]
		if c == nil {
			t.Errorf("line with unknown case %s: %s", m[1], line)
			return
		}
		corpus = append(corpus, corpusLine{Line: line, Via: via, Want: c.want(n, via)})
	}

	// /dev/kmsg: the records that arrived since the seek
	seen := map[string]bool{}
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 8192)
	for len(seen) < len(cases) && time.Now().Before(deadline) {
		k, err := kmsg.Read(buf)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			time.Sleep(20 * time.Millisecond)
			continue
		case errors.Is(err, syscall.EPIPE):
			continue // overwritten records; read on
		case err != nil:
			t.Fatalf("read /dev/kmsg: %v", err)
		}
		rec := strings.TrimRight(string(buf[:k]), "\n")
		// a record is the header line and " KEY=VALUE" continuation lines
		lines := strings.Split(rec, "\n")
		if m := tagRE.FindStringSubmatch(lines[0]); m != nil {
			seen[m[1]] = true
			add("kmsg", lines[0])
			for _, cont := range lines[1:] {
				corpus = append(corpus, corpusLine{Line: cont, Via: "kmsg", Note: "continuation line", Want: want{Result: "not_firewall"}})
			}
		}
	}
	for _, c := range cases {
		if !seen[c.id] {
			t.Errorf("case %s (%s): no line in /dev/kmsg within 5s", c.id, c.prefix)
		}
	}

	for _, style := range [][]string{
		{"dmesg"}, {"dmesg-t", "-t"}, {"dmesg-x", "-x"}, {"dmesg-T", "-T"},
		{"dmesg-iso", "--time-format", "iso"}, {"dmesg-r", "-r"},
	} {
		out, err := exec.Command("dmesg", style[1:]...).Output()
		if err != nil {
			t.Fatalf("dmesg %v: %v", style[1:], err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			add(style[0], l)
		}
	}

	for _, f := range rs.wait(t, len(cases)) {
		for _, l := range f.lines {
			add(f.via, l)
		}
	}

	// journald is only run to regenerate the corpus: CI hosts need not
	// have systemd, and the captured journalctl lines are checked by
	// TestCorpus on every run.
	if os.Getenv("KNOCK_CAPTURE_WRITE") == "1" {
		for via, lines := range journalLines(t, tag+cases[len(cases)-1].id) {
			for _, l := range lines {
				add(via, l)
			}
		}
	}

	if len(corpus) < 40 {
		t.Errorf("only %d captured lines", len(corpus))
	}
	for _, cl := range corpus {
		checkLine(t, cl)
	}
	if os.Getenv("KNOCK_CAPTURE_WRITE") == "1" && !t.Failed() {
		writeCorpus(t, "testdata/captured.jsonl", corpus)
	}
}

func (c *capCase) addrs(n *netnstest.Net) (src, dst netip.Addr) {
	if c.v6 {
		return n.Client.IP6, n.Client.ServerIP6
	}
	return n.Client.IP4, n.Client.ServerIP4
}

// want derives the expected fields from what was sent and how the line
// was read.
func (c *capCase) want(n *netnstest.Net, via string) want {
	src, dst := c.addrs(n)
	w := want{
		Result: "hit", Kind: "netfilter", Src: src.String(), Dst: dst.String(),
		Proto: c.proto, Prefix: strings.TrimSpace(c.prefix), In: n.Client.ServerIf,
		ICMPType: c.icmpType, Fragment: c.fragment, Flags: c.flags,
	}
	if c.outbound {
		w.In, w.Out = "", n.Client.Link
	}
	if !c.fragment && (c.proto == "TCP" || c.proto == "UDP") {
		w.SrcPort, w.DstPort = c.sport, c.dport
	}
	switch {
	case via == "kmsg", strings.HasPrefix(via, "rsyslog-"),
		strings.HasPrefix(via, "journalctl-") && via != "journalctl-cat":
		w.FromKernel = true
	}
	return w
}

func forgedWant(via, line, tag string) want {
	hit := want{
		Result: "hit", Kind: "netfilter", Src: "198.51.100.9", Dst: "203.0.113.1",
		Proto: "TCP", SrcPort: 4242, DstPort: 800, Flags: "SYN", In: "eth0",
		Prefix: tag + "99",
	}
	switch {
	case via == "rsyslog-rfc5424":
		// the PRI carries the facility: user, or app not "kernel"
		// (rsyslog gives a process asking for kern the user facility)
		return want{Result: "malformed"}
	case strings.Contains(line, "sshd"):
		// a tag that is not the kernel's and has no pid: kept in the
		// prefix (some syslogds take a log prefix for the tag), and not
		// from the kernel
		hit.Prefix = "sshd: " + hit.Prefix
		return hit
	case strings.Contains(line, "kernel["):
		return want{Result: "malformed"} // the kernel never logs with a pid
	}
	// RFC 3164 text cannot tell "logger -t kernel" from the kernel: that
	// is what /dev/kmsg is for. Kept to document the limit.
	hit.FromKernel = true
	return hit
}

func checkLine(t *testing.T, cl corpusLine) {
	t.Helper()
	var h Hit
	err := Parse([]byte(cl.Line), &h)
	got := want{}
	var me *MalformedError
	var ln *LimitNotice
	switch {
	case err == nil:
		got = wantOf(&h)
	case err == ErrNotFirewall:
		got.Result = "not_firewall"
	case errors.As(err, &me):
		got.Result = "malformed"
	case errors.As(err, &ln):
		got.Result = "limit"
		got.Rule = ln.Rule
	default:
		t.Errorf("%s: unexpected error type %T: %v", cl.Via, err, err)
		return
	}
	if got != cl.Want {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(cl.Want)
		t.Errorf("%s line %q\n got %s (err %v)\nwant %s", cl.Via, cl.Line, g, err, w)
	}
}

func wantOf(h *Hit) want {
	return want{
		Result: "hit", Kind: h.Kind.String(), Src: h.Src.String(), Dst: h.Dst.String(),
		Proto: h.Proto.String(), SrcPort: h.SrcPort, DstPort: h.DstPort, Flags: h.Flags.String(),
		Prefix: h.Prefix, In: h.In, Out: h.Out, ICMPType: h.ICMPType, ICMPCode: h.ICMPCode,
		Fragment: h.Fragment, FromKernel: h.FromKernel, Rule: h.Rule, Action: h.Action,
	}
}

func writeCorpus(t *testing.T, path string, corpus []corpusLine) {
	t.Helper()
	sort.SliceStable(corpus, func(i, j int) bool { return corpus[i].Via < corpus[j].Via })
	var b bytes.Buffer
	for _, c := range corpus {
		line, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d lines to %s", len(corpus), path)
}

// liveCases are the packets sent and the rules that log them. Prefixes
// get the run tag in front, so an iptables prefix here stays under 22
// bytes (the kernel limit is 29 with the tag).
func liveCases(tag string) []capCase {
	ipt := func(cmd, table, chain string, args ...string) []string {
		return append([]string{cmd, "-w", "-t", table, "-A", chain}, args...)
	}
	return []capCase{
		{id: "01", prefix: "knock:", proto: "TCP", sport: capBase + 1, dport: 801, flags: "SYN",
			rule: ipt("iptables", "filter", "INPUT", "-p", "tcp", "--dport", "801"), send: sendTCP},
		{id: "02", prefix: "[x] SRC=6.6.6.6 ", proto: "TCP", sport: capBase + 2, dport: 802, flags: "SYN",
			rule: ipt("iptables", "filter", "INPUT", "-p", "tcp", "--dport", "802"), logOpts: []string{"--log-tcp-options", "--log-ip-options", "--log-tcp-sequence"}, send: sendTCP},
		{id: "03", prefix: "IN=x OUT=y DPT=7", proto: "UDP", sport: capBase + 3, dport: 803,
			rule: ipt("iptables", "filter", "INPUT", "-p", "udp", "--dport", "803"), logOpts: []string{"--log-macdecode"}, send: sendUDP},
		{id: "04", prefix: "(ping) \\ ", proto: "ICMP", icmpType: 8,
			rule: ipt("iptables", "filter", "INPUT", "-p", "icmp", "--icmp-type", "echo-request"), logOpts: []string{"--log-level", "info"}, send: sendICMP},
		{id: "05", prefix: "out uid ", proto: "TCP", sport: capBase + 5, dport: 805, flags: "SYN", outbound: true,
			rule: ipt("iptables", "filter", "OUTPUT", "-p", "tcp", "--dport", "805"), logOpts: []string{"--log-uid", "--log-level", "debug"}, send: sendTCP},
		{id: "06", prefix: "frag1 ", proto: "UDP", sport: capBase + 6, dport: 806,
			rule: ipt("iptables", "raw", "PREROUTING", "-p", "udp", "--dport", "806"), send: sendBigUDP},
		{id: "07", prefix: "fragN ", proto: "UDP", fragment: true,
			rule: ipt("iptables", "raw", "PREROUTING", "-f", "-p", "udp"), send: sendNothing},
		{id: "08", prefix: "xmas ", proto: "TCP", sport: capBase + 8, dport: 808, flags: "FIN PSH URG",
			rule: ipt("iptables", "filter", "INPUT", "-p", "tcp", "--dport", "808"), send: hping("-F", "-P", "-U")},
		{id: "09", prefix: "ece cwr ", proto: "TCP", sport: capBase + 9, dport: 809, flags: "SYN ECE CWR",
			rule: ipt("iptables", "filter", "INPUT", "-p", "tcp", "--dport", "809"), logOpts: []string{"--log-tcp-sequence"}, send: hping("-S", "-X", "-Y")},
		{id: "10", prefix: "v6: ", v6: true, proto: "TCP", sport: capBase + 10, dport: 810, flags: "SYN",
			rule: ipt("ip6tables", "filter", "INPUT", "-p", "tcp", "--dport", "810"), logOpts: []string{"--log-tcp-options", "--log-ip-options", "--log-tcp-sequence"}, send: sendTCP},
		{id: "11", prefix: "v6 udp ", v6: true, proto: "UDP", sport: capBase + 11, dport: 811,
			rule: ipt("ip6tables", "filter", "INPUT", "-p", "udp", "--dport", "811"), logOpts: []string{"--log-macdecode"}, send: sendUDP},
		{id: "12", prefix: "v6 ping ", v6: true, proto: "ICMPv6", icmpType: 128,
			rule: ipt("ip6tables", "filter", "INPUT", "-p", "icmpv6", "--icmpv6-type", "echo-request"), send: sendICMP},
		{id: "13", prefix: "v6 frag ", v6: true, proto: "UDP", fragment: true, sport: capBase + 13, dport: 813,
			rule: []string{"nft", `  frag frag-off != 0 log prefix "%s"`}, send: sendBigUDP},
		{id: "14", prefix: "nft [all] K=V ", proto: "TCP", sport: capBase + 14, dport: 814, flags: "SYN",
			rule: []string{"nft", `  tcp dport 814 log prefix "%s" flags all`}, send: sendTCP},
		{id: "15", prefix: "nft udp ", proto: "UDP", sport: capBase + 15, dport: 815,
			rule: []string{"nft", `  udp dport 815 log prefix "%s" level warn`}, send: sendUDP},
		{id: "16", prefix: "nft icmp ", proto: "ICMP", icmpType: 8,
			rule: []string{"nft", `  icmp type echo-request log prefix "%s"`}, send: sendNothing},
		{id: "17", prefix: "nft v6 all ", v6: true, proto: "TCP", sport: capBase + 17, dport: 817, flags: "SYN",
			rule: []string{"nft", `  meta nfproto ipv6 tcp dport 817 log prefix "%s" flags all`}, send: sendTCP},
		{id: "18", prefix: "a long nftables prefix, [with] brackets, PROTO=UDP SPT=1 and more: ", proto: "UDP", sport: capBase + 18, dport: 818,
			rule: []string{"nft", `  udp dport 818 log prefix "%s" flags ether`}, send: sendUDP},
	}
}

func sendNothing(*testing.T, *netnstest.Net, *capCase) error { return nil }

// sendTCP makes one connection attempt from the case's source port; the
// server has no listener, so it answers with a reset.
func sendTCP(t *testing.T, n *netnstest.Net, c *capCase) error {
	src, dst := c.addrs(n)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice(), Port: int(c.sport)}, Timeout: time.Second}
	return netnstest.Do(n.Client.NS, func() error {
		conn, err := d.Dial("tcp", net.JoinHostPort(dst.String(), fmt.Sprint(c.dport)))
		if err == nil {
			conn.Close()
		}
		return nil // refused is the expected outcome
	})
}

func sendUDP(t *testing.T, n *netnstest.Net, c *capCase) error {
	return udpSend(n, c, 16)
}

// sendBigUDP sends a datagram larger than the link MTU, so the client
// fragments it (and case 07/13 log the later fragments).
func sendBigUDP(t *testing.T, n *netnstest.Net, c *capCase) error {
	return udpSend(n, c, 3000)
}

func udpSend(n *netnstest.Net, c *capCase, size int) error {
	src, dst := c.addrs(n)
	return netnstest.Do(n.Client.NS, func() error {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: src.AsSlice(), Port: int(c.sport)})
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.WriteToUDP(make([]byte, size), &net.UDPAddr{IP: dst.AsSlice(), Port: int(c.dport)})
		return err
	})
}

// sendICMP sends one echo request from a raw socket (no ping binary
// needed). The kernel fills in the ICMPv6 checksum; the ICMP one is ours.
func sendICMP(t *testing.T, n *netnstest.Net, c *capCase) error {
	_, dst := c.addrs(n)
	msg := []byte{8, 0, 0, 0, 0x6b, 0x6e, 0, 1, 'k', 'n', 'o', 'c', 'k'}
	network := "ip4:icmp"
	if c.v6 {
		msg[0] = 128
		network = "ip6:ipv6-icmp"
	} else {
		var sum uint32
		for i := 0; i+1 < len(msg); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(msg[i:]))
		}
		if len(msg)%2 == 1 {
			sum += uint32(msg[len(msg)-1]) << 8
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
	}
	return netnstest.Do(n.Client.NS, func() error {
		conn, err := net.ListenPacket(network, "")
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()})
		return err
	})
}

// hping sends one TCP packet with the given flags from the case's source port.
func hping(flags ...string) func(*testing.T, *netnstest.Net, *capCase) error {
	return func(t *testing.T, n *netnstest.Net, c *capCase) error {
		_, dst := c.addrs(n)
		argv := append([]string{"hping3", "-q", "-c", "1", "-i", "u1000", "-s", fmt.Sprint(c.sport), "-k",
			"-p", fmt.Sprint(c.dport)}, flags...)
		argv = append(argv, dst.String())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		full := append([]string{"netns", "exec", n.Client.NS}, argv...)
		out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "packets transmitted") {
			return fmt.Errorf("%v: %v: %s", argv, err, out)
		}
		return nil
	}
}

// rsyslog is a private rsyslogd reading /dev/kmsg (imkmsg, which does not
// take records away from anyone) and a private unix socket, writing the
// lines with the run tag in three templates.
type rsyslog struct {
	dir, sock string
	files     []rsFile
}

type rsFile struct {
	via, path string
	lines     []string
}

func startRsyslog(t *testing.T, tag string) *rsyslog {
	t.Helper()
	dir := t.TempDir()
	r := &rsyslog{dir: dir}
	tmpl := map[string]string{
		"rsyslog-traditional": "RSYSLOG_TraditionalFileFormat",
		"rsyslog-rfc3339":     "RSYSLOG_FileFormat",
		"rsyslog-rfc5424":     "RSYSLOG_SyslogProtocol23Format",
	}
	var rules strings.Builder
	fmt.Fprintf(&rules, "if ($msg contains %q) then {\n", tag)
	for _, via := range []string{"rsyslog-traditional", "rsyslog-rfc3339", "rsyslog-rfc5424"} {
		p := filepath.Join(dir, via+".log")
		r.files = append(r.files, rsFile{via: via, path: p})
		fmt.Fprintf(&rules, "  action(type=\"omfile\" file=%q template=%q)\n", p, tmpl[via])
	}
	rules.WriteString("}\n")
	r.sock = rsyslogtest.Start(t, dir, rsyslogtest.Options{Kmsg: true, Socket: true, Rules: rules.String()}).Sock
	return r
}

// wait reads the three files until each holds every case (and the forged
// lines), for at most fifteen seconds.
func (r *rsyslog) wait(t *testing.T, cases int) []rsFile {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		complete := true
		for i := range r.files {
			f := &r.files[i]
			f.lines = f.lines[:0]
			data, err := os.ReadFile(f.path)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			ids := map[string]bool{}
			idRE := regexp.MustCompile(`k[0-9a-f]{4}([0-9]{2})`)
			for sc.Scan() {
				f.lines = append(f.lines, sc.Text())
				if m := idRE.FindStringSubmatch(sc.Text()); m != nil {
					ids[m[1]] = true
				}
			}
			if len(ids) < cases+1 {
				complete = false
			}
		}
		if complete || time.Now().After(deadline) {
			if !complete {
				for _, f := range r.files {
					t.Errorf("rsyslog %s: %d lines, not every case within 5s", f.via, len(f.lines))
				}
			}
			return r.files
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// journalFormats are the journalctl -o styles captured.
var journalFormats = []string{"short", "short-iso", "short-iso-precise", "short-precise",
	"short-monotonic", "short-unix", "short-full", "cat"}

// journalLines runs systemd-journald in a private mount namespace (tmpfs
// over /run and /var/log/journal, so nothing of it reaches the host),
// lets it read /dev/kmsg until the line with last appears, and returns
// journalctl -k's output in every format, by "journalctl-FORMAT".
func journalLines(t *testing.T, last string) map[string][]string {
	t.Helper()
	const journald = "/lib/systemd/systemd-journald"
	if _, err := os.Stat(journald); err != nil {
		netnstest.Unavailable(t, "no %s to capture journalctl output: %v", journald, err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		netnstest.Unavailable(t, "no unshare: %v", err)
	}
	dir := t.TempDir()
	var script strings.Builder
	script.WriteString("set -e\nmount -t tmpfs tmpfs /run\n")
	script.WriteString("if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi\n")
	fmt.Fprintf(&script, "%s &\nJP=$!\ntrap 'kill $JP 2>/dev/null; wait $JP 2>/dev/null' EXIT\n", journald)
	fmt.Fprintf(&script, "i=0\nuntil journalctl -k --no-pager -o cat 2>/dev/null | grep -qF %q; do\n", last)
	script.WriteString("  i=$((i+1)); [ $i -lt 100 ] || { echo 'journald: no line in 10s' >&2; exit 1; }; sleep 0.1\ndone\n")
	for _, f := range journalFormats {
		fmt.Fprintf(&script, "journalctl -k --no-pager -o %s > %q\n", f, filepath.Join(dir, f+".txt"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("journald capture: %v: %s", err, out)
	}
	res := map[string][]string{}
	for _, f := range journalFormats {
		data, err := os.ReadFile(filepath.Join(dir, f+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		res["journalctl-"+f] = strings.Split(string(data), "\n")
	}
	return res
}
