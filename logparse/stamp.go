package logparse

import (
	"sync/atomic"
	"time"
)

// Stamps without a zone (RFC 3164, journalctl short, dmesg -T) are read as
// UTC wall-clock time, and stamps without a year get year 0: Hit.Time is
// informational, the daemon times sequences by arrival.

// syslogTime reads, followed by a space: journalctl's short-unix; RFC 3339 ("2026-11-21T05:20:44.123456+00:00",
// journalctl's "+0000", dmesg's "," fraction); "Mmm dd hh:mm:ss[.frac]"
// (RFC 3164, journalctl short and short-precise; the day may be " 3", "3"
// or "03"); and "yyyy Mmm dd hh:mm:ss".
func syslogTime(p []byte, h *Hit) ([]byte, bool) {
	if len(p) < 15 {
		return nil, false
	}
	if isDigit(p[0]) {
		if p[4] == '-' {
			rest, ok := rfc3339(p, h)
			if !ok || len(rest) == 0 || rest[0] != ' ' {
				return nil, false
			}
			return rest, true
		}
		if p[4] == ' ' {
			y, ok := atou(p[:4], 9999)
			if !ok {
				return nil, false
			}
			rest, ok := bsdTime(p[5:], int(y), h)
			return rest, ok
		}
		return unixTime(p, h)
	}
	if rest, ok := fullTime(p, h); ok {
		return rest, true
	}
	return bsdTime(p, 0, h)
}

// fullTime reads journalctl -o short-full's "Sat 2026-11-21 05:20:44 UTC".
// Zone names other than UTC cannot be resolved from the text; the wall
// clock is kept as UTC.
func fullTime(p []byte, h *Hit) ([]byte, bool) {
	if len(p) < 24 || p[3] != ' ' || !isLetter(p[0]) || !isDigit(p[4]) || p[8] != '-' || p[14] != ' ' {
		return nil, false
	}
	q := p[4:]
	y, ok1 := atou(q[0:4], 9999)
	mo, ok2 := atou(q[5:7], 12)
	d, ok3 := atou(q[8:10], 31)
	if !ok1 || !ok2 || !ok3 || q[7] != '-' || mo == 0 || d == 0 {
		return nil, false
	}
	hh, mm, ss, ns, i, ok := clock(q, 11)
	if !ok || i >= len(q) || q[i] != ' ' {
		return nil, false
	}
	zone, rest := token(q[i+1:])
	if len(zone) == 0 || len(zone) > 6 || !isLetter(zone[0]) {
		return nil, false
	}
	h.Time = date(int(y), int(mo), int(d), hh, mm, ss, ns, 0, time.UTC)
	return rest, true
}

func bsdTime(p []byte, year int, h *Hit) ([]byte, bool) {
	if len(p) < 14 || p[3] != ' ' {
		return nil, false
	}
	mon := month(p[:3])
	if mon == 0 {
		return nil, false
	}
	i := 4
	if p[i] == ' ' {
		i++
	}
	day, i, ok := num(p, i, 1, 2)
	if !ok || day < 1 || day > 31 || i >= len(p) || p[i] != ' ' {
		return nil, false
	}
	hh, mm, ss, ns, i, ok := clock(p, i+1)
	if !ok || i >= len(p) || p[i] != ' ' {
		return nil, false
	}
	h.Time = date(year, mon, day, hh, mm, ss, ns, 0, time.UTC)
	return p[i:], true
}

// rfc3339 reads an RFC 3339 date-time and returns what follows it. The
// date and time of day are fixed-width ("2026-11-21T05:20:44"), so they
// are read at their places.
func rfc3339(p []byte, h *Hit) ([]byte, bool) {
	if len(p) < 19 || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != ' ') {
		return nil, false
	}
	y1, ok1 := two(p, 0)
	y2, ok2 := two(p, 2)
	mo, ok3 := two(p, 5)
	d, ok4 := two(p, 8)
	if !ok1 || !ok2 || !ok3 || !ok4 || mo == 0 || mo > 12 || d == 0 || d > 31 {
		return nil, false
	}
	y := y1*100 + y2
	hh, mm, ss, ns, i, ok := clock(p, 11)
	if !ok || i >= len(p) {
		return nil, false
	}
	loc, off := time.UTC, 0
	switch p[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		sign := 1
		if p[i] == '-' {
			sign = -1
		}
		i++
		oh, j, ok := num(p, i, 2, 2)
		if !ok || oh > 23 {
			return nil, false
		}
		if j < len(p) && p[j] == ':' {
			j++
		}
		om, j, ok := num(p, j, 2, 2)
		if !ok || om > 59 {
			return nil, false
		}
		i = j
		if off = sign * (oh*3600 + om*60); off != 0 {
			loc = fixedZone(off)
		}
	default:
		return nil, false
	}
	h.Time = date(y, mo, d, hh, mm, ss, ns, off, loc)
	return p[i:], true
}

// unixTime reads journalctl -o short-unix's "1763702444.204357" (seconds
// and microseconds since the epoch), followed by a space.
func unixTime(p []byte, h *Hit) ([]byte, bool) {
	dot := 0
	for dot < len(p) && dot < 12 && isDigit(p[dot]) {
		dot++
	}
	if dot < 9 || dot >= len(p) || p[dot] != '.' {
		return nil, false
	}
	end := dot + 1
	for end < len(p) && isDigit(p[end]) {
		end++
	}
	if end-dot-1 != 6 || end >= len(p) || p[end] != ' ' {
		return nil, false
	}
	sec, _ := atou(p[:dot], 1<<40)
	us, _ := atou(p[dot+1:end], 999999)
	h.Time = time.Unix(int64(sec), int64(us)*1000).UTC()
	return p[end:], true
}

// dmesgCtime reads dmesg -T's "[Sat Nov 21 05:20:44 2026] ".
func dmesgCtime(p []byte, h *Hit) ([]byte, bool) {
	if len(p) < 26 || p[0] != '[' || p[4] != ' ' || !isLetter(p[1]) {
		return nil, false
	}
	q := p[5:]
	if len(q) < 21 || q[3] != ' ' {
		return nil, false
	}
	mon := month(q[:3])
	if mon == 0 {
		return nil, false
	}
	i := 4
	if q[i] == ' ' {
		i++
	}
	day, i, ok := num(q, i, 1, 2)
	if !ok || day < 1 || day > 31 || i >= len(q) || q[i] != ' ' {
		return nil, false
	}
	hh, mm, ss, ns, i, ok := clock(q, i+1)
	if !ok || i+6 > len(q) || q[i] != ' ' || q[i+5] != ']' {
		return nil, false
	}
	y, ok := atou(q[i+1:i+5], 9999)
	if !ok {
		return nil, false
	}
	h.Time = date(int(y), mon, day, hh, mm, ss, ns, 0, time.UTC)
	rest := q[i+6:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, true
}

// clock reads "hh:mm:ss" with an optional "." or "," fraction of up to nine digits.
func clock(p []byte, i int) (hh, mm, ss, ns, next int, ok bool) {
	if len(p) < i+8 || p[i+2] != ':' || p[i+5] != ':' {
		return 0, 0, 0, 0, 0, false
	}
	hh, ok1 := two(p, i)
	mm, ok2 := two(p, i+3)
	ss, ok3 := two(p, i+6)
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return 0, 0, 0, 0, 0, false
	}
	i += 8
	if i < len(p) && (p[i] == '.' || p[i] == ',') {
		s := i + 1
		j := s
		var v int
		for j < len(p) && j-s < 10 && isDigit(p[j]) {
			v = v*10 + int(p[j]-'0')
			j++
		}
		if j == s || j-s > 9 {
			return 0, 0, 0, 0, 0, false
		}
		for k := j - s; k < 9; k++ {
			v *= 10
		}
		ns, i = v, j
	}
	return hh, mm, ss, ns, i, true
}

// two reads the two decimal digits at p[i:i+2].
func two(p []byte, i int) (int, bool) {
	a, b := p[i]-'0', p[i+1]-'0'
	return int(a)*10 + int(b), a <= 9 && b <= 9
}

// num reads between lo and hi decimal digits at p[i:].
func num(p []byte, i, lo, hi int) (v, next int, ok bool) {
	s := i
	for i < len(p) && i-s < hi && isDigit(p[i]) {
		v = v*10 + int(p[i]-'0')
		i++
	}
	return v, i, i-s >= lo
}

func month(b []byte) int {
	switch string(b) {
	case "Jan":
		return 1
	case "Feb":
		return 2
	case "Mar":
		return 3
	case "Apr":
		return 4
	case "May":
		return 5
	case "Jun":
		return 6
	case "Jul":
		return 7
	case "Aug":
		return 8
	case "Sep":
		return 9
	case "Oct":
		return 10
	case "Nov":
		return 11
	case "Dec":
		return 12
	}
	return 0
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }

// lastZone caches the most recent fixed zone: a log carries one or two
// offsets, and time.FixedZone allocates.
var lastZone atomic.Pointer[zoneEntry]

type zoneEntry struct {
	off int
	loc *time.Location
}

func fixedZone(off int) *time.Location {
	if z := lastZone.Load(); z != nil && z.off == off {
		return z.loc
	}
	z := &zoneEntry{off: off, loc: time.FixedZone("", off)}
	lastZone.Store(z)
	return z.loc
}

// date is time.Date for the checked fields of a log stamp (year 0-9999,
// month 1-12, day 1-31, hh 0-23, mm 0-59, ss 0-60) at the fixed offset
// off of loc, without time.Date's general normalisation and zone look-up:
// the days from the civil date (H. Hinnant's days_from_civil, proleptic
// Gregorian as time.Date), then time.Unix. A day past the month's end or
// second 60 carries over as in time.Date.
func date(year, month, day, hh, mm, ss, ns, off int, loc *time.Location) time.Time {
	y := year
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := month + 9 // months since March
	if mp >= 12 {
		mp -= 12
	}
	doe := yoe*365 + yoe/4 - yoe/100 + (153*mp+2)/5 + day - 1
	days := era*146097 + doe - 719468 // since 1970-01-01
	t := time.Unix(int64(days)*86400+int64(hh*3600+mm*60+ss-off), int64(ns))
	if loc == time.UTC {
		return t.UTC()
	}
	return t.In(loc)
}
