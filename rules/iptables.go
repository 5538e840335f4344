package rules

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultChain is the iptables chain the daemon owns.
const DefaultChain = "KNOCKDAEMON"

// commentPrefix starts the comment on every rule the daemon adds, so a
// rule identifies both the daemon and the grant.
const commentPrefix = "knockdaemon"

// IPTables opens ports with one ACCEPT rule per opening in a chain of its
// own, jumped to from the top of INPUT. IPv4 openings go through iptables,
// IPv6 openings through ip6tables: one backend for both families.
//
// Every command passes -w so that the xtables lock is waited on. A rule is
// checked with -C before it is appended, and Close deletes until the rule
// is gone, so duplicates never stack. Calls are serialised.
type IPTables struct {
	r     Runner
	chain string
	mu    sync.Mutex
}

// NewIPTables returns the iptables/ip6tables backend using chain (empty:
// DefaultChain).
func NewIPTables(r Runner, chain string) (*IPTables, error) {
	if chain == "" {
		chain = DefaultChain
	}
	if err := validChain(chain); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("iptables: no runner")
	}
	return &IPTables{r: r, chain: chain}, nil
}

// validChain accepts names iptables accepts for a user chain (at most 28
// characters, XT_EXTENSION_MAXNAMELEN - 1) that cannot be read as an option
// or a built-in target.
func validChain(c string) error {
	if c == "" || len(c) > 28 {
		return fmt.Errorf("iptables chain %q: want 1 to 28 characters", c)
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' && i > 0 || ch == '.' && i > 0) {
			return fmt.Errorf("iptables chain %q: only letters, digits, _ - . allowed", c)
		}
	}
	switch strings.ToUpper(c) {
	case "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING",
		"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG", "NFLOG":
		return fmt.Errorf("iptables chain %q: a built-in name, want a chain of the daemon's own", c)
	}
	return nil
}

// Name is "iptables".
func (b *IPTables) Name() string { return "iptables" }

// Chain is the chain the backend owns.
func (b *IPTables) Chain() string { return b.chain }

// xtablesTool is iptables for IPv4 and ip6tables for IPv6.
func xtablesTool(a netip.Addr) string {
	if a.Is4() {
		return "iptables"
	}
	return "ip6tables"
}

var xtablesTools = [...]string{"iptables", "ip6tables"}

// recogniseXtables is the one place where iptables' and ip6tables' answers
// are recognised (iptables 1.4 to 1.8, legacy and nf_tables variants).
func recogniseXtables(e *CmdError) error {
	s := e.Stderr
	switch {
	case strings.Contains(s, "Chain already exists"),
		strings.Contains(s, "File exists"):
		return ErrExists
	case strings.Contains(s, "does a matching rule exist"),
		strings.Contains(s, "No chain/target/match by that name"),
		strings.Contains(s, "does not exist"),
		strings.Contains(s, "doesn't exist"): // "Set X doesn't exist." (-m set)
		return ErrNotExist
	}
	return nil
}

func (b *IPTables) run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := b.r.Run(ctx, argv)
	return out, classify(err, recogniseXtables)
}

// comment identifies the daemon and the grant: "knockdaemon ADDR PROTO PORT".
func comment(o Opening) string {
	return commentPrefix + " " + o.Addr.String() + " " + o.Proto + " " + strconv.Itoa(int(o.Port))
}

// ruleSpec is the rule for o after "-A CHAIN"; iptables -S prints it back
// in the same order (with /32 or /128 added to the address).
func ruleSpec(o Opening) []string {
	return []string{
		"-s", o.Addr.String(),
		"-p", o.Proto, "-m", o.Proto, "--dport", strconv.Itoa(int(o.Port)),
		"-m", "comment", "--comment", comment(o),
		"-j", "ACCEPT",
	}
}

func (b *IPTables) ruleArgv(op string, o Opening) []string {
	return append([]string{xtablesTool(o.Addr), "-w", op, b.chain}, ruleSpec(o)...)
}

func (b *IPTables) jumpArgv(tool, op string) []string {
	if op == "-I" {
		return []string{tool, "-w", "-I", "INPUT", "1", "-j", b.chain}
	}
	return []string{tool, "-w", op, "INPUT", "-j", b.chain}
}

// Check reports whether iptables and ip6tables are installed and usable.
func (b *IPTables) Check(ctx context.Context) error {
	for _, tool := range xtablesTools {
		if _, err := b.run(ctx, tool, "-w", "-n", "-L", "INPUT"); err != nil {
			return checkError(tool, err, "install the iptables package and run the daemon as root (CAP_NET_ADMIN)")
		}
	}
	return nil
}

// Setup creates the chain in both families and the jump to it at the top
// of INPUT; it is idempotent. When a step fails, Setup removes what this
// call created (the jumps it inserted, the chains it made, never ones
// that were there before) and returns the error: nothing is left half
// applied.
func (b *IPTables) Setup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var undo [][]string
	fail := func(err error) error {
		return rollback(ctx, b.run, undo, fmt.Errorf("iptables setup: %w", err))
	}
	for _, tool := range xtablesTools {
		_, err := b.run(ctx, tool, "-w", "-N", b.chain)
		switch {
		case err == nil:
			undo = append(undo, []string{tool, "-w", "-X", b.chain})
		case !errors.Is(err, ErrExists):
			return fail(err)
		}
		created, err := ensureRuleCreated(ctx, b.run, b.jumpArgv(tool, "-C"), b.jumpArgv(tool, "-I"))
		if created {
			undo = append(undo, b.jumpArgv(tool, "-D"))
		}
		if err != nil {
			return fail(err)
		}
	}
	return nil
}

// rollbackTimeout bounds the undoing of a failed Setup, which runs even
// when the Setup's context was cancelled.
const rollbackTimeout = 30 * time.Second

// rollback runs the undo commands in reverse order (all of them, even
// after one fails) and returns err, with what could not be undone joined
// to it.
func rollback(ctx context.Context, run func(context.Context, ...string) ([]byte, error), undo [][]string, err error) error {
	if len(undo) == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	for i := len(undo) - 1; i >= 0; i-- {
		if _, uerr := run(ctx, undo[i]...); uerr != nil && !errors.Is(uerr, ErrNotExist) {
			errs = append(errs, uerr)
		}
	}
	if len(errs) > 0 {
		return errors.Join(err, fmt.Errorf("undoing the setup also failed, remove by hand: %w", errors.Join(errs...)))
	}
	return err
}

// ensureRule runs check and, when the rule does not exist, add.
func ensureRule(ctx context.Context, run func(context.Context, ...string) ([]byte, error), check, add []string) error {
	_, err := ensureRuleCreated(ctx, run, check, add)
	return err
}

// ensureRuleCreated is ensureRule that also says whether add ran and
// succeeded.
func ensureRuleCreated(ctx context.Context, run func(context.Context, ...string) ([]byte, error), check, add []string) (bool, error) {
	_, err := run(ctx, check...)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, ErrNotExist) {
		return false, err
	}
	if _, err := run(ctx, add...); err != nil {
		return false, err
	}
	return true, nil
}

// maxDuplicates bounds the delete loops: no more copies of one rule than
// this are removed in one call.
const maxDuplicates = 64

// deleteAll runs del until the rule is gone, so that duplicates left by
// someone else do not survive a close.
func deleteAll(ctx context.Context, run func(context.Context, ...string) ([]byte, error), del []string) error {
	for range maxDuplicates {
		_, err := run(ctx, del...)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: still present after %d deletions", FormatArgv(del), maxDuplicates)
}

// Teardown removes the jumps, flushes and deletes the chain in both
// families. What is already gone is not an error.
func (b *IPTables) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, tool := range xtablesTools {
		if err := deleteAll(ctx, b.run, b.jumpArgv(tool, "-D")); err != nil {
			return fmt.Errorf("iptables teardown: %w", err)
		}
		for _, op := range []string{"-F", "-X"} {
			if _, err := b.run(ctx, tool, "-w", op, b.chain); err != nil && !errors.Is(err, ErrNotExist) {
				return fmt.Errorf("iptables teardown: %w", err)
			}
		}
	}
	return nil
}

// Open adds the ACCEPT rule for o unless it is already there. iptables
// has no timeouts: the daemon closes the opening on time.
func (b *IPTables) Open(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ensureRule(ctx, b.run, b.ruleArgv("-C", o), b.ruleArgv("-A", o)); err != nil {
		return fmt.Errorf("iptables open %s: %w", o, err)
	}
	return nil
}

// Close deletes the rule for o, every copy of it; absent is not an error.
func (b *IPTables) Close(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := deleteAll(ctx, b.run, b.ruleArgv("-D", o)); err != nil {
		return fmt.Errorf("iptables close %s: %w", o, err)
	}
	return nil
}

// List returns the openings in the chain of both families: rules the
// daemon added, recognised by their exact shape and comment. Other rules
// someone put in the chain are not reported. A missing chain holds
// nothing.
func (b *IPTables) List(ctx context.Context) ([]Opening, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []Opening
	for _, tool := range xtablesTools {
		out, err := b.run(ctx, tool, "-w", "-S", b.chain)
		if errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("iptables list: %w", err)
		}
		all = append(all, parseIPTablesS(out, b.chain)...)
	}
	return owned(all), nil
}

// parseIPTablesS reads "iptables -S CHAIN" output and returns the rules
// that are exactly what Open adds. Lines it does not recognise are
// skipped, never guessed at.
func parseIPTablesS(out []byte, chain string) []Opening {
	var res []Opening
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		args, err := SplitArgs(line)
		if err != nil || len(args) < 2 || args[1] != chain {
			continue
		}
		if o, ok := parseRuleSpec(args[2:]); ok {
			res = append(res, o)
		}
	}
	return res
}

func parseRuleSpec(args []string) (Opening, bool) {
	var (
		o                   Opening
		src, cmt, target    string
		proto, match, dport string
		matches             []string
	)
	for i := 0; i < len(args); i++ {
		if i+1 >= len(args) {
			return o, false
		}
		v := args[i+1]
		switch args[i] {
		case "-s":
			src = v
		case "-p":
			proto = v
		case "-m":
			matches = append(matches, v)
			if v != "comment" {
				match = v
			}
		case "--dport":
			dport = v
		case "--comment":
			cmt = v
		case "-j":
			target = v
		default:
			// Negations, interfaces, other matches: not a rule of ours.
			return o, false
		}
		i++
	}
	if target != "ACCEPT" || match != proto || len(matches) != 2 {
		return o, false
	}
	addr, ok := parseHost(src)
	if !ok {
		return o, false
	}
	p, ok := protoFromName(proto)
	if !ok {
		return o, false
	}
	port, err := strconv.ParseUint(dport, 10, 16)
	if err != nil || port == 0 {
		return o, false
	}
	o = Opening{Addr: addr, Proto: p, Port: uint16(port)}
	if cmt != comment(o) {
		return o, false
	}
	return o, true
}

// parseHost accepts a single host as firewalls print it: "ADDR",
// "ADDR/32" or "ADDR/128" (or an IPv4 netmask of 255.255.255.255).
func parseHost(s string) (netip.Addr, bool) {
	addr, bits, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	if hasMask && bits != strconv.Itoa(a.BitLen()) && !(a.Is4() && bits == "255.255.255.255") {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// owned keeps the listed openings Close can act on: valid ones (an
// unspecified or multicast address put in by hand is not an opening of
// the daemon's), each once (a rule duplicated by hand), in listing order.
func owned(in []Opening) []Opening {
	seen := make(map[key]bool, len(in))
	out := in[:0]
	for _, o := range in {
		if o.Validate() == nil && !seen[o.key()] {
			seen[o.key()] = true
			out = append(out, o)
		}
	}
	return out
}

// checkError wraps a failed Check with a hint the command line prints.
func checkError(tool string, err error, hint string) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s is not installed: %w\nhint: %s", tool, err, hint)
	}
	return fmt.Errorf("%s is not usable: %w\nhint: %s", tool, err, hint)
}
