package knock

import (
	"fmt"
	"time"
)

// Defaults for the zero fields of a Config (docs/ARCHITECTURE.md, [knock]).
const (
	DefaultBase            = 745
	DefaultSequenceTimeout = 10 * time.Second
	DefaultMaxSources      = 65536
	DefaultMaxHits         = 16
	DefaultLockoutFailures = 3
	DefaultLockout         = 60 * time.Second
)

// Bounds a Config must stay within.
const (
	// SequenceLen is the number of knocks in one candidate: one Blowfish
	// block (docs/PROTOCOL.md §3).
	SequenceLen = 8

	MaxSequenceTimeout = time.Hour
	MaxLockout         = 24 * time.Hour
	MaxMaxSources      = 1 << 22
	MaxMaxHits         = 255
	MaxLockoutFailures = 255
)

// Config sets an Assembler's limits. A zero field takes its default; a value
// out of range is an error from Validate and New. Durations are kept at
// millisecond resolution (a sub-millisecond remainder is dropped).
type Config struct {
	// Base is the first knock port: knocks are base..base+255 (default 745).
	Base uint16
	// SequenceTimeout is how long a hit stays part of its source's sequence
	// (default 10s, at most 1h).
	SequenceTimeout time.Duration
	// MaxSources bounds the table of sources, locked-out ones included; a new
	// source beyond it evicts the least recently active one (default 65536).
	MaxSources int
	// MaxHits bounds the hits kept per source, oldest dropped first
	// (default 16, at least 8, at most 255). The assembler in fact keeps
	// eight whatever this says, which behaves the same: every candidate is
	// the last eight live hits, so an older hit can never be part of one.
	MaxHits int
	// LockoutFailures is the number of failures, with no Accept between
	// them, that locks a source out (default 3, at most 255). A Reject counts
	// as a failure only once per eight new hits (see the package comment), so
	// a source that keeps failing is locked out after LockoutFailures x 8
	// hits.
	LockoutFailures int
	// Lockout is how long a locked-out source is ignored, and how long a
	// source's failures are remembered after its hits expired (default 60s,
	// at most 24h).
	Lockout time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Base == 0 {
		c.Base = DefaultBase
	}
	if c.SequenceTimeout == 0 {
		c.SequenceTimeout = DefaultSequenceTimeout
	}
	if c.MaxSources == 0 {
		c.MaxSources = DefaultMaxSources
	}
	if c.MaxHits == 0 {
		c.MaxHits = DefaultMaxHits
	}
	if c.LockoutFailures == 0 {
		c.LockoutFailures = DefaultLockoutFailures
	}
	if c.Lockout == 0 {
		c.Lockout = DefaultLockout
	}
	return c
}

// Validate reports the first field of c (after defaults) that is out of range.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case int(c.Base)+255 > 65535:
		return fmt.Errorf("knock: base %d: the knock ports base..base+255 must end at or below 65535 (base at most 65280)", c.Base)
	case c.SequenceTimeout < time.Millisecond || c.SequenceTimeout > MaxSequenceTimeout:
		return fmt.Errorf("knock: sequence timeout %v: must be between 1ms and %v", c.SequenceTimeout, MaxSequenceTimeout)
	case c.MaxSources < 1 || c.MaxSources > MaxMaxSources:
		return fmt.Errorf("knock: max sources %d: must be between 1 and %d", c.MaxSources, MaxMaxSources)
	case c.MaxHits < SequenceLen || c.MaxHits > MaxMaxHits:
		return fmt.Errorf("knock: max hits %d: must be between %d (one sequence) and %d", c.MaxHits, SequenceLen, MaxMaxHits)
	case c.LockoutFailures < 1 || c.LockoutFailures > MaxLockoutFailures:
		return fmt.Errorf("knock: lockout failures %d: must be between 1 and %d", c.LockoutFailures, MaxLockoutFailures)
	case c.Lockout < time.Millisecond || c.Lockout > MaxLockout:
		return fmt.Errorf("knock: lockout %v: must be between 1ms and %v", c.Lockout, MaxLockout)
	}
	return nil
}
