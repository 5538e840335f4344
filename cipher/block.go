package cipher

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/crypto/blowfish"
)

// Protocol constants (docs/PROTOCOL.md).
const (
	// BlockSize is the size of the request block: one Blowfish block.
	BlockSize = 8
	// Knocks is the number of knocks in a sequence, one per block byte.
	Knocks = BlockSize
	// DefaultBase is the default first knock port: knocks land in 745..1000.
	DefaultBase = 745
	// MaxBase is the highest base for which base+255 is still a port.
	MaxBase = 65535 - 255
	// Window is the length of a timed-mode window.
	Window = 30 * time.Second
	// DefaultMaxSkew is the default clock skew the daemon tolerates.
	DefaultMaxSkew = 60 * time.Second
	// MaxSkewLimit bounds the skew a Decoder accepts (larger values are
	// clamped); config allows the same at most. Each window costs 4 KiB
	// of expanded key per timed key: an hour is 241 windows, ~1 MiB per key.
	MaxSkewLimit = time.Hour

	// TimeUnlimited in Request.Time opens with no time limit.
	TimeUnlimited = 0
	// TimeClose in Request.Time closes an existing opening now.
	TimeClose = 255
)

// Errors for requests that cannot be put on the wire.
var (
	ErrPortZero    = errors.New("port 0 is not a valid port to open (want 1..65535)")
	ErrAllowNotIP4 = errors.New("the address to allow must be IPv4 (the protocol carries IPv4 only; leave it empty to allow the knock source, which also works for IPv6)")
	ErrBase        = fmt.Errorf("base port must be 1..%d so that base+255 is a port", MaxBase)
	ErrClockBefore = errors.New("clock is before 1970; timed keys need a correct clock")
)

// Request is the plaintext of a knock sequence (docs/PROTOCOL.md §1).
type Request struct {
	// Allow is the IPv4 address to let in. The zero Addr or 0.0.0.0 mean
	// "the address the knocks come from". An IPv4-mapped IPv6 address is
	// taken as its IPv4 address.
	Allow netip.Addr
	// Port is the port to open, 1..65535.
	Port uint16
	// Time is 0 (no limit), 1..254 minutes, or 255 (close now).
	Time uint8
}

// AllowsSource reports whether the request grants the knock source itself
// (Allow is the zero Addr or 0.0.0.0).
func (r Request) AllowsSource() bool {
	return !r.Allow.IsValid() || r.Allow.Unmap() == netip.IPv4Unspecified()
}

// String describes the request for logs, e.g. "allow=source port=22 time=10m".
func (r Request) String() string {
	allow := "source"
	if !r.AllowsSource() {
		allow = r.Allow.String()
	}
	var t string
	switch r.Time {
	case TimeUnlimited:
		t = "unlimited"
	case TimeClose:
		t = "close"
	default:
		t = fmt.Sprintf("%dm", r.Time)
	}
	return fmt.Sprintf("allow=%s port=%d time=%s", allow, r.Port, t)
}

// Plaintext lays out the request block: allow (4 bytes, network order),
// port (2 bytes, big-endian), time, and the check byte, the sum of the
// seven bytes before it mod 256.
func Plaintext(r Request) ([BlockSize]byte, error) {
	var p [BlockSize]byte
	if r.Port == 0 {
		return p, ErrPortZero
	}
	if !r.AllowsSource() {
		a := r.Allow.Unmap()
		if !a.Is4() {
			return p, ErrAllowNotIP4
		}
		a4 := a.As4()
		copy(p[:4], a4[:])
	}
	p[4] = byte(r.Port >> 8)
	p[5] = byte(r.Port)
	p[6] = r.Time
	p[7] = checkByte(&p)
	return p, nil
}

func checkByte(p *[BlockSize]byte) byte {
	return p[0] + p[1] + p[2] + p[3] + p[4] + p[5] + p[6]
}

// WindowOf returns the timed-mode window number floor(unix_seconds / 30)
// of t. It is negative before 1970.
func WindowOf(t time.Time) int64 {
	s := t.Unix()
	w := s / 30
	if s%30 < 0 {
		w--
	}
	return w
}

// Seal encrypts r for key k at time now (the window comes from now in
// timed mode; static mode ignores now) and returns the cipher block.
func Seal(k Key, r Request, now time.Time) ([BlockSize]byte, error) {
	var c [BlockSize]byte
	p, err := Plaintext(r)
	if err != nil {
		return c, err
	}
	var w int64
	switch k.Mode {
	case Timed:
		if w = WindowOf(now); w < 0 {
			return c, ErrClockBefore
		}
	case Static:
	default:
		return c, fmt.Errorf("key %q: invalid mode %d", k.Name, uint8(k.Mode))
	}
	bk := BlockKey(&k.Secret, k.Mode, uint64(w))
	bf, err := blowfish.NewCipher(bk[:])
	clear(bk[:])
	if err != nil {
		return c, err // cannot happen: 32-byte keys are valid
	}
	bf.Encrypt(c[:], p[:])
	clear(p[:])
	return c, nil
}

// CheckBase returns ErrBase unless every knock port base..base+255 is a
// valid destination port.
func CheckBase(base uint16) error {
	if base == 0 || base > MaxBase {
		return ErrBase
	}
	return nil
}

// Ports turns a cipher block into the eight knock ports base+C[i].
// base must satisfy CheckBase.
func Ports(c [BlockSize]byte, base uint16) [Knocks]uint16 {
	var p [Knocks]uint16
	for i, b := range c {
		p[i] = base + uint16(b)
	}
	return p
}

// BlockFromPorts inverts Ports: it fails when a port lies outside
// base..base+255.
func BlockFromPorts(ports [Knocks]uint16, base uint16) ([BlockSize]byte, error) {
	var c [BlockSize]byte
	for i, p := range ports {
		if p < base || int(p)-int(base) > 255 {
			return c, fmt.Errorf("knock %d: port %d outside %d..%d", i+1, p, base, int(base)+255)
		}
		c[i] = byte(p - base)
	}
	return c, nil
}

// Encode returns the eight knock ports that carry r for key k at time now,
// with knock ports starting at base (docs/PROTOCOL.md §3).
func Encode(k Key, r Request, now time.Time, base uint16) ([Knocks]uint16, error) {
	if err := CheckBase(base); err != nil {
		return [Knocks]uint16{}, err
	}
	c, err := Seal(k, r, now)
	if err != nil {
		return [Knocks]uint16{}, err
	}
	return Ports(c, base), nil
}
