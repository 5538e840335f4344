package rules

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// IPFW opens ports on FreeBSD with one numbered rule per opening, taken
// from a range the admin reserves before the deny rule, for example
// "ipfw -q add 10001 allow tcp from 198.51.100.7 to me 22" (IPv6: "to
// me6"). Numbers in use in the range, the daemon's or not, are never
// reused. ipfw has no rule timeouts: the daemon closes on time.
//
// ipfw cannot run on Linux: the argv and the parsing of "ipfw list" are
// tested against the output formats kept in testdata/ (see README.md).
type IPFW struct {
	r      Runner
	lo, hi int
	mu     sync.Mutex
}

// DefaultRuleRange is the ipfw rule range the daemon uses by default.
const DefaultRuleRange = "10000-10999"

// NewIPFW returns the ipfw backend using rule numbers in ruleRange
// ("FIRST-LAST", within 1-65534; empty: DefaultRuleRange).
func NewIPFW(r Runner, ruleRange string) (*IPFW, error) {
	if r == nil {
		return nil, errors.New("ipfw: no runner")
	}
	if ruleRange == "" {
		ruleRange = DefaultRuleRange
	}
	lo, hi, err := parseRuleRange(ruleRange)
	if err != nil {
		return nil, err
	}
	return &IPFW{r: r, lo: lo, hi: hi}, nil
}

func parseRuleRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case !ok || err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("ipfw rule_range %q: want FIRST-LAST, for example %q", s, DefaultRuleRange)
	case lo < 1 || hi > 65534 || lo > hi:
		// 65535 is the default rule, which cannot be changed.
		return 0, 0, fmt.Errorf("ipfw rule_range %q: want 1 <= FIRST <= LAST <= 65534", s)
	}
	return lo, hi, nil
}

// Name is "ipfw".
func (b *IPFW) Name() string { return "ipfw" }

// recogniseIPFW is the one place where ipfw's answers are recognised
// (FreeBSD 11 to 14 ipfw2.c: "rule N does not exist", "no rules in range
// N-M"; older kernels answer a delete of a missing rule with ENOENT or
// ESRCH from setsockopt).
func recogniseIPFW(e *CmdError) error {
	s := e.Stderr
	switch {
	case strings.Contains(s, "does not exist"),
		strings.Contains(s, "no rules in range"),
		strings.Contains(s, "not found"),
		strings.Contains(s, "No such process"),
		strings.Contains(s, "No such file or directory"):
		return ErrNotExist
	}
	return nil
}

func (b *IPFW) run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := b.r.Run(ctx, argv)
	return out, classify(err, recogniseIPFW)
}

func (b *IPFW) listArgv() []string {
	return []string{"ipfw", "list", strconv.Itoa(b.lo) + "-" + strconv.Itoa(b.hi)}
}

func (b *IPFW) addArgv(n int, o Opening) []string {
	me := "me"
	if o.Addr.Is6() {
		me = "me6"
	}
	return []string{"ipfw", "-q", "add", strconv.Itoa(n), "allow", o.Proto,
		"from", o.Addr.String(), "to", me, strconv.Itoa(int(o.Port))}
}

func deleteArgv(n int) []string {
	return []string{"ipfw", "-q", "delete", strconv.Itoa(n)}
}

// ipfwRule is one rule of the range: its number and, when it is exactly
// what Open adds, the opening.
type ipfwRule struct {
	num  int
	o    Opening
	ours bool
}

// list reads the range. "no rules in range" is an empty range.
func (b *IPFW) list(ctx context.Context) ([]ipfwRule, error) {
	out, err := b.run(ctx, b.listArgv()...)
	if errors.Is(err, ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseIPFWList(out, b.lo, b.hi), nil
}

// parseIPFWList reads "ipfw list" output (also "ipfw -a list", whose
// packet and byte counters follow the number). Every numbered line in [lo, hi]
// is a number in use; a rule is the daemon's only when it reads exactly
// "N allow PROTO from ADDR to me|me6 [dst-port] PORT", the two formats
// ipfw prints (FreeBSD 11+ prints "dst-port", older releases do not).
func parseIPFWList(out []byte, lo, hi int) []ipfwRule {
	var res []ipfwRule
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < lo || n > hi {
			continue
		}
		r := ipfwRule{num: n}
		r.o, r.ours = parseIPFWBody(f[1:])
		res = append(res, r)
	}
	return res
}

func parseIPFWBody(f []string) (Opening, bool) {
	// With -a the counters come first: "10001 3 180 allow ...".
	if len(f) > 2 && isDigits(f[0]) && isDigits(f[1]) {
		f = f[2:]
	}
	if len(f) == 8 && f[6] == "dst-port" {
		f = append(f[:6:6], f[7])
	}
	if len(f) != 7 || f[0] != "allow" || f[2] != "from" || f[4] != "to" {
		return Opening{}, false
	}
	proto, ok := protoFromName(f[1])
	if !ok || f[1] != proto {
		return Opening{}, false
	}
	a, ok := parseHost(f[3])
	if !ok || a.Is4() && f[5] != "me" || a.Is6() && f[5] != "me6" {
		return Opening{}, false
	}
	port, err := strconv.ParseUint(f[6], 10, 16)
	if err != nil || port == 0 {
		return Opening{}, false
	}
	return Opening{Addr: a, Proto: proto, Port: uint16(port)}, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// freeNumber is the lowest number of the range not in use.
func (b *IPFW) freeNumber(rules []ipfwRule) (int, error) {
	used := make(map[int]bool, len(rules))
	for _, r := range rules {
		used[r.num] = true
	}
	for n := b.lo; n <= b.hi; n++ {
		if !used[n] {
			return n, nil
		}
	}
	return 0, fmt.Errorf("ipfw: every rule number in %d-%d is in use; widen rule_range", b.lo, b.hi)
}

// Check reports whether ipfw is installed and the firewall module loaded
// (the default rule 65535 can be listed).
func (b *IPFW) Check(ctx context.Context) error {
	if _, err := b.run(ctx, "ipfw", "list", "65535"); err != nil {
		return checkError("ipfw", err, "load the firewall (kldload ipfw, firewall_enable=\"YES\" in rc.conf) and run the daemon as root; keep rule_range before your deny rule")
	}
	return nil
}

// Setup has nothing to create: the admin reserves the range before the
// deny rule.
func (b *IPFW) Setup(ctx context.Context) error { return nil }

// Teardown deletes every rule of the daemon's in the range, and nothing
// else.
func (b *IPFW) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	rules, err := b.list(ctx)
	if err != nil {
		return fmt.Errorf("ipfw teardown: %w", err)
	}
	for _, r := range rules {
		if r.ours {
			if err := b.delete(ctx, r.num); err != nil {
				return fmt.Errorf("ipfw teardown: %w", err)
			}
		}
	}
	return nil
}

func (b *IPFW) delete(ctx context.Context, n int) error {
	_, err := b.run(ctx, deleteArgv(n)...)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// Open adds a rule for o at the lowest free number, unless a rule for o is
// already in the range. Two ipfw invocations (list, add).
func (b *IPFW) Open(ctx context.Context, o Opening) error {
	return b.forOpening(ctx, "open", o, func(o Opening, rules []ipfwRule, mine []int) error {
		if len(mine) > 0 {
			return nil
		}
		n, err := b.freeNumber(rules)
		if err != nil {
			return err
		}
		_, err = b.run(ctx, b.addArgv(n, o)...)
		return err
	})
}

// Close deletes every rule for o in the range; absent is not an error.
func (b *IPFW) Close(ctx context.Context, o Opening) error {
	return b.forOpening(ctx, "close", o, func(_ Opening, _ []ipfwRule, mine []int) error {
		for _, n := range mine {
			if err := b.delete(ctx, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// forOpening normalizes o and, holding b.mu, lists the rules in the range
// and calls f with them and the numbers of our rules for o. An error of
// the listing or of f is wrapped as "ipfw OP o: ...".
func (b *IPFW) forOpening(ctx context.Context, op string, o Opening, f func(o Opening, rules []ipfwRule, mine []int) error) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rules, err := b.list(ctx)
	if err == nil {
		var mine []int
		for _, r := range rules {
			if r.ours && r.o.key() == o.key() {
				mine = append(mine, r.num)
			}
		}
		err = f(o, rules, mine)
	}
	if err != nil {
		return fmt.Errorf("ipfw %s %s: %w", op, o, err)
	}
	return nil
}

// List returns the daemon's rules in the range.
func (b *IPFW) List(ctx context.Context) ([]Opening, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rules, err := b.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("ipfw list: %w", err)
	}
	var res []Opening
	for _, r := range rules {
		if r.ours {
			res = append(res, r.o)
		}
	}
	return owned(res), nil
}
