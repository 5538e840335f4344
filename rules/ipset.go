package rules

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxIPSetTimeout is the largest element timeout ipset accepts, in
// seconds (ipset 7: UINT_MAX/1000).
const maxIPSetTimeout = 2147483

// IPSet opens ports by adding "addr,proto:port" elements with a kernel
// timeout to two hash:ip,port sets (SET for IPv4, SET6 for IPv6), matched
// by one iptables/ip6tables rule at the top of INPUT. Openings expire in
// the kernel on their own, also when the daemon is dead: the crash safety
// of nftables for iptables users.
//
// Open and Close are one ipset invocation each.
//
// When the Runner is a StreamRunner, Open and Close write their command
// as one line to a long-lived "ipset -" child instead of forking ipset
// each time, and wait until ipset has finished it; a child that does not
// answer is killed and the command is run once more as a fork. Stop ends
// the child.
type IPSet struct {
	r          Runner
	set4, set6 string
	mu         sync.Mutex
	sess       *session // nil when the runner cannot start streams
}

// NewIPSet returns the ipset backend with sets named set and set+"6"
// (empty: DefaultSet).
func NewIPSet(r Runner, set string) (*IPSet, error) {
	if r == nil {
		return nil, errors.New("ipset: no runner")
	}
	if set == "" {
		set = DefaultSet
	}
	// IPSET_MAXNAMELEN is 32 with the terminating NUL; leave room for "6".
	if len(set) > 30 {
		return nil, fmt.Errorf("ipset set %q: at most 30 characters", set)
	}
	for i := 0; i < len(set); i++ {
		c := set[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || (c == '-' || c == '.') && i > 0) {
			return nil, fmt.Errorf("ipset set %q: only letters, digits, _ - . allowed", set)
		}
	}
	return &IPSet{r: r, set4: set, set6: set + "6", sess: newSession(r, ipsetProto{})}, nil
}

// runFast runs an ipset command of Open or Close through the long-lived
// child and, when there is none or it broke, as a fork.
func (b *IPSet) runFast(ctx context.Context, argv []string) error {
	if b.sess != nil {
		line, err := ipsetLine(argv)
		if err != nil {
			return err
		}
		err = b.sess.do(ctx, line, argv)
		if !errors.Is(err, errSessionBroken) {
			return classify(err, recogniseIPSet)
		}
	}
	_, err := b.run(ctx, argv...)
	return err
}

// Stop ends the long-lived ipset child, if one runs; a later Open starts
// a new one. Teardown stops it too.
func (b *IPSet) Stop() error { return b.sess.stop() }

// Name is "ipset".
func (b *IPSet) Name() string { return "ipset" }

// recogniseIPSet is the one place where ipset's answers are recognised
// (ipset 6 and 7).
func recogniseIPSet(e *CmdError) error {
	s := e.Stderr
	switch {
	case strings.Contains(s, "set with the same name already exists"),
		strings.Contains(s, "it's already added"):
		return ErrExists
	case strings.Contains(s, "The set with the given name does not exist"),
		strings.Contains(s, "it's not added"):
		return ErrNotExist
	}
	return nil
}

// run classifies by tool: ipset's answers or iptables'.
func (b *IPSet) run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := b.r.Run(ctx, argv)
	if argv[0] == "ipset" {
		return out, classify(err, recogniseIPSet)
	}
	return out, classify(err, recogniseXtables)
}

type ipsetFamily struct {
	set, family, tool string
}

func (b *IPSet) families() [2]ipsetFamily {
	return [2]ipsetFamily{{b.set4, "inet", "iptables"}, {b.set6, "inet6", "ip6tables"}}
}

func (b *IPSet) setFor(o Opening) string {
	if o.Addr.Is4() {
		return b.set4
	}
	return b.set6
}

func ipsetElem(o Opening) string {
	return o.Addr.String() + "," + o.Proto + ":" + strconv.Itoa(int(o.Port))
}

// createArgv creates f's set; with exist, a set that exists with the same
// type and options is not an error (one with others is).
func (b *IPSet) createArgv(f ipsetFamily, exist bool) []string {
	argv := []string{"ipset"}
	if exist {
		argv = append(argv, "-exist")
	}
	// timeout 0: the set supports per-element timeouts, and an element
	// added without one (or with 0) is permanent.
	return append(argv, "create", f.set, "hash:ip,port", "family", f.family, "timeout", "0")
}

func (b *IPSet) matchArgv(f ipsetFamily, op string) []string {
	argv := []string{f.tool, "-w", op, "INPUT"}
	if op == "-I" {
		argv = append(argv, "1")
	}
	return append(argv, "-m", "set", "--match-set", f.set, "src,dst",
		"-m", "comment", "--comment", commentPrefix+" ipset "+f.set, "-j", "ACCEPT")
}

func (b *IPSet) openArgv(o Opening) ([]string, error) {
	s := timeoutSeconds(o.Timeout)
	if s > maxIPSetTimeout {
		return nil, fmt.Errorf("ipset open %s: timeout %v is longer than ipset's limit of %ds", o, o.Timeout, maxIPSetTimeout)
	}
	return []string{"ipset", "-exist", "add", b.setFor(o), ipsetElem(o), "timeout", strconv.FormatInt(s, 10)}, nil
}

func (b *IPSet) closeArgv(o Opening) []string {
	return []string{"ipset", "-exist", "del", b.setFor(o), ipsetElem(o)}
}

// Check reports whether ipset, iptables and ip6tables are installed and
// usable.
func (b *IPSet) Check(ctx context.Context) error {
	if _, err := b.run(ctx, "ipset", "version"); err != nil {
		return checkError("ipset", err, "install the ipset package and run the daemon as root (CAP_NET_ADMIN)")
	}
	for _, tool := range xtablesTools {
		if _, err := b.run(ctx, tool, "-w", "-n", "-L", "INPUT"); err != nil {
			return checkError(tool, err, "install the iptables package and run the daemon as root (CAP_NET_ADMIN)")
		}
	}
	return nil
}

// Setup creates both sets and the rule matching each at the top of INPUT;
// it is idempotent. A set is created without -exist first, so that Setup
// knows whether it made it; one that exists is checked with -exist
// (same type and options, or an error). When a step fails, Setup removes
// what this call created (rules it inserted, sets it made) and returns
// the error: nothing is left half applied.
func (b *IPSet) Setup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var undo [][]string
	fail := func(err error) error {
		return rollback(ctx, b.undoRun, undo, fmt.Errorf("ipset setup: %w", err))
	}
	for _, f := range b.families() {
		_, err := b.run(ctx, b.createArgv(f, false)...)
		if err == nil {
			undo = append(undo, []string{"ipset", "destroy", f.set})
		} else if errors.Is(err, ErrExists) {
			_, err = b.run(ctx, b.createArgv(f, true)...)
			if errors.Is(err, ErrExists) {
				return fail(fmt.Errorf("set %s exists with another type or options (want hash:ip,port family %s timeout 0): %w", f.set, f.family, err))
			}
		}
		if err != nil {
			return fail(err)
		}
		created, err := ensureRuleCreated(ctx, b.run, b.matchArgv(f, "-C"), b.matchArgv(f, "-I"))
		if created {
			undo = append(undo, b.matchArgv(f, "-D"))
		}
		if err != nil {
			return fail(err)
		}
	}
	// ipset caches what it learnt of sets; a new child after Setup
	// starts from the sets as they are now.
	_ = b.sess.stop()
	return nil
}

// undoRun runs a rollback command; destroying a set waits out the
// kernel's release of a just deleted rule, as Teardown does.
func (b *IPSet) undoRun(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 3 && argv[0] == "ipset" && argv[1] == "destroy" {
		return nil, b.destroy(ctx, argv[2])
	}
	return b.run(ctx, argv...)
}

// Teardown removes the rules and destroys the sets. What is already gone
// is not an error.
func (b *IPSet) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.families() {
		if err := deleteAll(ctx, b.run, b.matchArgv(f, "-D")); err != nil {
			return fmt.Errorf("ipset teardown: %w", err)
		}
		if err := b.destroy(ctx, f.set); err != nil {
			return fmt.Errorf("ipset teardown: %w", err)
		}
	}
	_ = b.sess.stop()
	return nil
}

// destroy destroys set. The kernel may release the reference of a just
// deleted rule a moment later, so "in use" is retried briefly.
func (b *IPSet) destroy(ctx context.Context, set string) error {
	const tries = 20
	for i := 0; ; i++ {
		_, err := b.run(ctx, "ipset", "destroy", set)
		if err == nil || errors.Is(err, ErrNotExist) {
			return nil
		}
		var ce *CmdError
		if i == tries-1 || !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "in use by a kernel component") {
			return err
		}
		t := time.NewTimer(25 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Open adds o's element with its timeout, or refreshes the timeout when it
// is there (-exist): one ipset invocation.
func (b *IPSet) Open(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	argv, err := b.openArgv(o)
	if err != nil {
		return err
	}
	if err := b.runFast(ctx, argv); err != nil {
		return fmt.Errorf("ipset open %s: %w", o, err)
	}
	return nil
}

// Close removes o's element; absent is not an error (-exist), nor is a
// missing set (after a teardown).
func (b *IPSet) Close(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	err = b.runFast(ctx, b.closeArgv(o))
	if errors.Is(err, ErrNotExist) {
		return nil // no set: the opening cannot be there either
	}
	if err != nil {
		return fmt.Errorf("ipset close %s: %w", o, err)
	}
	return nil
}

// List returns the elements of both sets; Timeout is the time the kernel
// has left on each (0: none). A missing set holds nothing.
func (b *IPSet) List(ctx context.Context) ([]Opening, error) {
	var all []Opening
	for _, f := range b.families() {
		out, err := b.run(ctx, "ipset", "list", f.set, "-output", "save")
		if errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipset list: %w", err)
		}
		elems, err := parseIPSetSave(out, f.set)
		if err != nil {
			return nil, fmt.Errorf("ipset list %s: %w", f.set, err)
		}
		all = append(all, elems...)
	}
	return owned(all), nil
}

// parseIPSetSave reads "ipset list SET -output save" (the same as "ipset
// save SET"): a create line, then "add SET ADDR,PROTO:PORT [timeout N]".
func parseIPSetSave(out []byte, set string) ([]Opening, error) {
	var res []Opening
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "add" || f[1] != set {
			continue
		}
		o, err := parseIPSetElem(f[2])
		if errors.Is(err, errForeign) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		for i := 3; i+1 < len(f); i += 2 {
			if f[i] == "timeout" {
				n, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("line %q: bad timeout", line)
				}
				o.Timeout = time.Duration(n) * time.Second
			}
		}
		res = append(res, o)
	}
	return res, nil
}

// parseIPSetElem reads "ADDR,PROTO:PORT" (a port without a protocol means
// tcp in ipset's syntax).
func parseIPSetElem(s string) (Opening, error) {
	addr, pp, ok := strings.Cut(s, ",")
	if !ok {
		return Opening{}, fmt.Errorf("element %q: want ADDR,PROTO:PORT", s)
	}
	a, ok := parseHost(addr)
	if !ok {
		return Opening{}, fmt.Errorf("element %q: bad address", s)
	}
	proto, port, ok := strings.Cut(pp, ":")
	if !ok {
		proto, port = "tcp", pp
	}
	p, ok := protoFromName(proto)
	if !ok {
		return Opening{}, fmt.Errorf("element %q: protocol %q: %w", s, proto, errForeign)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Opening{}, fmt.Errorf("element %q: bad port", s)
	}
	return Opening{Addr: a, Proto: p, Port: uint16(n)}, nil
}
