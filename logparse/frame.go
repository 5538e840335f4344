package logparse

import (
	"bytes"
	"time"
)

// Syslog facilities that matter here (RFC 5424 section 6.2.1; FreeBSD
// <sys/syslog.h> for security).
const (
	facUnknown  = -1
	facKern     = 0
	facSecurity = 13 // FreeBSD LOG_SECURITY: where ipfw logs
)

// frame is what the framing of a line says: where the message starts and
// which facility wrote it, when the framing carries one.
type frame struct {
	msg      []byte
	facility int
}

// parseFrame strips the framing from a line: a /dev/kmsg record header;
// Proxmox pvefw-logger's header; RFC 5424; an RFC 3164 style header with
// an optional <PRI>, a traditional, high-precision or RFC 3339 timestamp,
// FreeBSD syslogd -v "<facility.level>", an optional host name and the
// tag; dmesg's decoded facility (-x), "[ctime]" (-T), ISO and raw (-r)
// forms; journalctl -k's short, short-iso, short-iso-precise,
// short-precise, short-monotonic, short-unix and short-full forms; and the
// kernel's "[  uptime]" stamp. A line with none of these is taken as bare
// kernel text (dmesg -t, journalctl -o cat, a pipe). It fills h.Time,
// h.Uptime and h.FromKernel. A non-empty reason means the framing says a
// process, not the kernel, wrote the line.
func parseFrame(p []byte, h *Hit) (frame, string) {
	f := frame{facility: facUnknown}
	// A /dev/kmsg header starts with digits and a comma, pvefw-logger's
	// with digits and a space; an RFC 3339 stamp has neither.
	d := 0
	for d < len(p) && isDigit(p[d]) {
		d++
	}
	if d > 0 && d < len(p) && p[d] == ',' {
		if rest, pri, usec, ok := kmsgHeader(p); ok {
			h.Uptime = time.Duration(usec) * time.Microsecond
			f.facility = pri >> 3
			h.FromKernel = f.facility == facKern
			f.msg = rest
			return f, ""
		}
	}
	if d > 0 && d < len(p) && p[d] == ' ' {
		if rest, ok := pveHeader(p, h); ok {
			f.msg = rest
			return f, ""
		}
	}
	if len(p) > 0 && p[0] == '<' {
		if pri, n, ok := syslogPRI(p); ok {
			p = p[n:]
			f.facility = pri >> 3
			if len(p) >= 2 && p[0] == '1' && p[1] == ' ' {
				return rfc5424(p[2:], f, h)
			}
		}
	}
	if rest, fac, ok := dmesgDecoded(p); ok {
		p, f.facility = rest, fac
	}
	if rest, ok := dmesgCtime(p, h); ok {
		p = rest
	} else if rest, ok := syslogTime(p, h); ok && dmesgISO(p) {
		// dmesg --time-format iso: no host, no tag
		p = skipSpaces(rest)
	} else if ok {
		p = skipSpaces(rest)
		if len(p) > 0 && p[0] == '<' { // FreeBSD syslogd -v / -vv
			if rest, fac, ok := bsdFacility(p); ok {
				p, f.facility = skipSpaces(rest), fac
			}
		}
		t1, rest1 := token(p)
		switch {
		case isKernelTag(t1):
			h.FromKernel = true
			p = rest1
		case len(t1) > 0 && t1[len(t1)-1] == ':':
			// No host name; a tag that is not the kernel's. With a pid it
			// is a process; without one it may be a log prefix that a
			// simple syslogd took for the tag, so it stays in the message.
			if hasPID(t1) {
				return f, "the syslog tag names a process, not the kernel"
			}
		case bytes.IndexByte(t1, '=') >= 0:
			// the message itself (dmesg --time-format iso, no host)
		default: // the host name
			p = skipSpaces(rest1)
			t2, rest2 := token(p)
			if isKernelTag(t2) {
				h.FromKernel = true
				p = rest2
			} else if hasPID(t2) {
				return f, "the syslog tag names a process, not the kernel"
			}
		}
	} else {
		// bare text, "kernel: ...", or journalctl -o short-monotonic's
		// "[  488.204357] host kernel: ..."
		p = uptime(p, h)
		t1, rest1 := token(p)
		t2, rest2 := token(rest1)
		switch {
		case isKernelTag(t1):
			h.FromKernel = true
			p = rest1
		case h.Uptime != 0 && isKernelTag(t2):
			h.FromKernel = true
			p = rest2
		}
	}
	f.msg = uptime(p, h)
	return f, ""
}

// kmsgHeader reads "<prio>,<seq>,<usec>,<flags>[,...];" (Linux
// Documentation/ABI/testing/dev-kmsg).
func kmsgHeader(p []byte) (rest []byte, pri int, usec uint64, ok bool) {
	semi := bytes.IndexByte(p[:min(len(p), 96)], ';')
	if semi < 0 {
		return nil, 0, 0, false
	}
	h := p[:semi]
	var field [3][]byte
	for k := 0; k < 3; k++ {
		c := bytes.IndexByte(h, ',')
		if c < 0 {
			return nil, 0, 0, false
		}
		field[k], h = h[:c], h[c+1:]
	}
	prio, ok1 := atou(field[0], 1<<20)
	_, ok2 := atou(field[1], 1<<63)
	us, ok3 := atou(field[2], 1<<63)
	if !ok1 || !ok2 || !ok3 {
		return nil, 0, 0, false
	}
	// flags: "-" or "c"/"+" (continuation markers), then optional fields
	if len(h) == 0 || (h[0] != '-' && h[0] != 'c' && h[0] != '+') {
		return nil, 0, 0, false
	}
	return p[semi+1:], int(prio), us, true
}

// syslogPRI reads "<N>" with N at most 191 (RFC 5424 section 6.2.1).
func syslogPRI(p []byte) (pri, n int, ok bool) {
	end := bytes.IndexByte(p[:min(len(p), 6)], '>')
	if end < 2 {
		return 0, 0, false
	}
	v, ok := atou(p[1:end], 191)
	return int(v), end + 1, ok
}

// rfc5424 reads "TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG" after
// "<PRI>1 " (RFC 5424 section 6; rsyslog's RSYSLOG_SyslogProtocol23Format).
func rfc5424(p []byte, f frame, h *Hit) (frame, string) {
	ts, p := token(p)
	if !(len(ts) == 1 && ts[0] == '-') {
		if rest, ok := rfc3339(ts, h); !ok || len(rest) != 0 {
			return f, "bad RFC 5424 timestamp"
		}
	}
	_, p = token(p) // host
	app, p := token(p)
	_, p = token(p) // procid
	_, p = token(p) // msgid
	if len(app) == 0 {
		return f, "truncated RFC 5424 header"
	}
	if len(p) == 0 {
		return f, "truncated RFC 5424 header"
	}
	if p[0] == '-' {
		p = p[1:]
	} else {
		for len(p) > 0 && p[0] == '[' {
			end := sdEnd(p)
			if end < 0 {
				return f, "unterminated RFC 5424 structured data"
			}
			p = p[end:]
		}
	}
	if len(p) > 0 && p[0] == ' ' {
		p = p[1:]
	}
	p = bytes.TrimPrefix(p, []byte("\xEF\xBB\xBF"))
	if string(app) == "kernel" && f.facility == facKern {
		h.FromKernel = true
	} else if string(app) != "kernel" {
		return f, "the RFC 5424 app name is not the kernel"
	}
	f.msg = uptime(p, h)
	return f, ""
}

// sdEnd returns the index just past one "[...]" structured-data element,
// honouring quoted values with \" and \] escapes, or -1.
func sdEnd(p []byte) int {
	inq := false
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' && inq:
			i++
		case c == '"':
			inq = !inq
		case c == ']' && !inq:
			return i + 1
		}
	}
	return -1
}

// dmesgDecoded reads dmesg -x's "kern  :warn  : ".
func dmesgDecoded(p []byte) (rest []byte, fac int, ok bool) {
	if len(p) == 0 || p[0] < 'a' || p[0] > 'z' {
		return nil, 0, false // every facility name starts with a small letter
	}
	c := bytes.IndexByte(p[:min(len(p), 10)], ':')
	if c < 2 {
		return nil, 0, false
	}
	name := bytes.TrimRight(p[:c], " ")
	fac, ok = facilityNumber(name)
	if !ok || len(p) < c+2 {
		return nil, 0, false
	}
	q := p[c+1:]
	c2 := bytes.IndexByte(q[:min(len(q), 10)], ':')
	if c2 < 1 || !isLevel(bytes.TrimRight(q[:c2], " ")) {
		return nil, 0, false
	}
	q = q[c2+1:]
	if len(q) == 0 || q[0] != ' ' {
		return nil, 0, false
	}
	return q[1:], fac, true
}

// bsdFacility reads FreeBSD syslogd -v's "<security.info>" or "<4.3>".
func bsdFacility(p []byte) (rest []byte, fac int, ok bool) {
	end := bytes.IndexByte(p[:min(len(p), 24)], '>')
	if end < 0 {
		return nil, 0, false
	}
	in := p[1:end]
	dot := bytes.IndexByte(in, '.')
	if dot < 1 {
		return nil, 0, false
	}
	name, level := in[:dot], in[dot+1:]
	if v, ok := atou(name, 23); ok {
		fac = int(v)
	} else if fac, ok = facilityNumber(name); !ok {
		return nil, 0, false
	}
	if _, ok := atou(level, 7); !ok && !isLevel(level) {
		return nil, 0, false
	}
	return p[end+1:], fac, true
}

func facilityNumber(name []byte) (int, bool) {
	switch string(name) {
	case "kern":
		return 0, true
	case "user":
		return 1, true
	case "mail":
		return 2, true
	case "daemon":
		return 3, true
	case "auth":
		return 4, true
	case "syslog":
		return 5, true
	case "lpr":
		return 6, true
	case "news":
		return 7, true
	case "uucp":
		return 8, true
	case "cron":
		return 9, true
	case "authpriv":
		return 10, true
	case "ftp":
		return 11, true
	case "ntp":
		return 12, true
	case "security":
		return 13, true
	case "console":
		return 14, true
	}
	if len(name) == 6 && string(name[:5]) == "local" && name[5] >= '0' && name[5] <= '7' {
		return 16 + int(name[5]-'0'), true
	}
	return 0, false
}

func isLevel(b []byte) bool {
	switch string(b) {
	case "emerg", "alert", "crit", "err", "warn", "warning", "notice", "info", "debug":
		return true
	}
	return false
}

func isKernelTag(t []byte) bool {
	switch string(t) {
	case "kernel:", "/kernel:", "mach_kernel:":
		return true
	}
	return false
}

// hasPID reports a tag of the form "name[1234]:".
func hasPID(t []byte) bool {
	if len(t) < 4 || t[len(t)-1] != ':' || t[len(t)-2] != ']' {
		return false
	}
	open := bytes.LastIndexByte(t, '[')
	return open > 0 && isDigits(t[open+1:len(t)-2])
}

// uptime strips the kernel's "[  488.204357] " stamp, when present.
func uptime(p []byte, h *Hit) []byte {
	if len(p) < 4 || p[0] != '[' {
		return p
	}
	i := 1
	for i < len(p) && p[i] == ' ' {
		i++
	}
	// seconds: 1 to 20 digits, at most 1<<40; then 1 to 9 digits of fraction
	s := i
	var sec uint64
	for i < len(p) && isDigit(p[i]) {
		if sec <= 1<<40 {
			sec = sec*10 + uint64(p[i]-'0')
		}
		i++
	}
	if i == s || i-s > 20 || sec > 1<<40 || i >= len(p) || p[i] != '.' {
		return p
	}
	i++
	s = i
	var ns uint64
	for i < len(p) && isDigit(p[i]) && i-s < 10 {
		ns = ns*10 + uint64(p[i]-'0')
		i++
	}
	n := i - s
	if n == 0 || n > 9 || i >= len(p) || p[i] != ']' {
		return p
	}
	for ; n < 9; n++ {
		ns *= 10
	}
	h.Uptime = time.Duration(sec)*time.Second + time.Duration(ns)
	i++
	if i < len(p) && p[i] == ' ' {
		i++
	}
	return p[i:]
}

// token returns the text up to the next space and what follows the
// spaces after it.
func token(p []byte) (tok, rest []byte) {
	i := 0
	for i < len(p) && p[i] != ' ' {
		i++
	}
	tok = p[:i]
	for i < len(p) && p[i] == ' ' {
		i++
	}
	return tok, p[i:]
}

func skipSpaces(p []byte) []byte {
	i := 0
	for i < len(p) && p[i] == ' ' {
		i++
	}
	return p[i:]
}

// pveHeader reads the header of Proxmox VE's pvefw-logger, which writes
// NFLOG packets to /var/log/pve-firewall.log itself:
// "<vmid> <level> <chain> <dd/Mon/yyyy:hh:mm:ss +zone> ". It leaves out
// empty IN= and OUT= fields, unlike the kernel.
func pveHeader(p []byte, h *Hit) ([]byte, bool) {
	vmid, p := token(p)
	lvl, p := token(p)
	chain, p := token(p)
	if !isDigits(vmid) || !isDigits(lvl) || len(chain) == 0 || len(p) < 27 {
		return nil, false
	}
	if p[2] != '/' || p[6] != '/' || p[11] != ':' || p[20] != ' ' || p[26] != ' ' {
		return nil, false
	}
	d, ok1 := atou(p[0:2], 31)
	mon := month(p[3:6])
	y, ok2 := atou(p[7:11], 9999)
	hh, mm, ss, _, i, ok3 := clock(p, 12)
	if !ok1 || !ok2 || !ok3 || mon == 0 || d == 0 || i != 20 {
		return nil, false
	}
	zone := p[21:26]
	if (zone[0] != '+' && zone[0] != '-') || !isDigits(zone[1:]) {
		return nil, false
	}
	off := (int(zone[1]-'0')*10+int(zone[2]-'0'))*3600 + (int(zone[3]-'0')*10+int(zone[4]-'0'))*60
	if zone[0] == '-' {
		off = -off
	}
	loc := time.UTC
	if off != 0 {
		loc = fixedZone(off)
	}
	h.Time = date(int(y), mon, int(d), hh, mm, ss, 0, off, loc)
	return p[27:], true
}

// dmesgISO tells dmesg's ISO stamp ("2026-11-21T06:02:19,780316+00:00",
// a comma before the fraction) from RFC 3339 syslog stamps.
func dmesgISO(p []byte) bool {
	return len(p) > 19 && p[4] == '-' && p[10] == 'T' && p[19] == ','
}
