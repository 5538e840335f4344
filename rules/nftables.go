package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSet is the base name of the sets the nftables and ipset backends
// create: SET for IPv4 and SET6 for IPv6.
const DefaultSet = "knockdaemon"

// DefaultNftTable and DefaultNftChain name the admin's table and chain
// that drops, when the configuration does not.
const (
	DefaultNftTable = "inet filter"
	DefaultNftChain = "input"
)

// NFTables opens ports by adding "addr . proto . port" elements, with a
// kernel timeout, to two sets in the admin's own table, matched by one
// accept rule per family at the top of the admin's chain that drops.
//
// The rule must live in that chain: in nftables an accept in one base
// chain does not override a drop in another base chain on the same hook.
//
// A new opening is one nft command ("create element"); refreshing one
// that exists and closing are one atomic transaction each, so an opening
// never half exists. Elements expire in the kernel on their own, also
// when the daemon is dead.
//
// When the Runner is a StreamRunner (ExecRunner, and NetnsRunner over
// one), Open and Close write their command as one line to a long-lived
// "nft -i" child instead of forking nft each time (about 5x faster, see
// README.md) and wait until nft has finished it; a child that does not
// answer is killed and the command is run once more as a fork. Check,
// Setup, Teardown and List always fork. Stop ends the child.
type NFTables struct {
	r             Runner
	family, table string
	chain         string
	sets          []nftSet // one per family the table can hold
	mu            sync.Mutex
	// addUpdates: the kernel replaces an element's timeout on a plain
	// "add element" (found by Setup's probe), so Open is one "add".
	addUpdates atomic.Bool
	// sess is the long-lived "nft -i" that Open and Close write to when
	// the runner can start one (nil otherwise); see session.
	sess *session
}

type nftSet struct {
	name  string
	v6    bool
	tag   string   // the rule's comment
	typ   []string // element type
	saddr []string // "ip saddr" or "ip6 saddr"
}

// NewNFTables returns the nftables backend for the admin's table ("FAMILY
// NAME", for example "inet filter"; family ip, ip6 or inet) and chain,
// creating sets named set and set+"6" (empty: DefaultSet).
func NewNFTables(r Runner, table, chain, set string) (*NFTables, error) {
	if r == nil {
		return nil, errors.New("nftables: no runner")
	}
	f := strings.Fields(table)
	if len(f) != 2 {
		return nil, fmt.Errorf("nftables table %q: want FAMILY NAME, for example \"inet filter\"", table)
	}
	family, name := f[0], f[1]
	if family != "inet" && family != "ip" && family != "ip6" {
		return nil, fmt.Errorf("nftables table %q: family %q, want inet, ip or ip6", table, family)
	}
	if chain == "" {
		return nil, errors.New("nftables: no chain (nft_chain): name the admin's chain that drops")
	}
	if set == "" {
		set = DefaultSet
	}
	for what, id := range map[string]string{"table": name, "chain": chain, "set": set + "6"} {
		if err := validNftIdent(id); err != nil {
			return nil, fmt.Errorf("nftables %s: %w", what, err)
		}
	}
	b := &NFTables{r: r, family: family, table: name, chain: chain}
	b.sess = newSession(r, &nftProto{})
	if family != "ip6" {
		b.sets = append(b.sets, nftSet{name: set, tag: commentPrefix + " " + set,
			typ: []string{"ipv4_addr", ".", "inet_proto", ".", "inet_service"}, saddr: []string{"ip", "saddr"}})
	}
	if family != "ip" {
		b.sets = append(b.sets, nftSet{name: set + "6", v6: true, tag: commentPrefix + " " + set + "6",
			typ: []string{"ipv6_addr", ".", "inet_proto", ".", "inet_service"}, saddr: []string{"ip6", "saddr"}})
	}
	return b, nil
}

// validNftIdent accepts nft's unquoted identifiers (scanner.l: a letter,
// then letters, digits, / \ _ . -), at most 255 bytes, so a name can never
// carry nft syntax.
func validNftIdent(s string) error {
	if s == "" || len(s) > 255 {
		return fmt.Errorf("%q: want 1 to 255 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return fmt.Errorf("%q: must start with a letter", s)
		}
		if !letter && !(c >= '0' && c <= '9') && !strings.ContainsRune(`/\_.-`, rune(c)) {
			return fmt.Errorf("%q: only letters, digits and / \\ _ . - allowed", s)
		}
	}
	return nil
}

// Name is "nftables".
func (b *NFTables) Name() string { return "nftables" }

// recogniseNft is the one place where nft's answers are recognised
// (nftables 0.9 to 1.1): netlink errors are printed as "Error: ...".
func recogniseNft(e *CmdError) error {
	s := e.Stderr
	switch {
	case strings.Contains(s, "Error: Could not process rule: No such file or directory"),
		strings.Contains(s, "Error: No such file or directory"):
		return ErrNotExist
	case strings.Contains(s, "Error: Could not process rule: File exists"):
		return ErrExists
	}
	return nil
}

func (b *NFTables) run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := b.r.Run(ctx, argv)
	return out, classify(err, recogniseNft)
}

// runFast runs an nft command of Open or Close through the long-lived
// child and, when there is none or it broke, as a fork.
func (b *NFTables) runFast(ctx context.Context, argv []string) error {
	if b.sess != nil {
		line, err := nftLine(argv)
		if err != nil {
			return err
		}
		err = b.sess.do(ctx, line, argv)
		if !errors.Is(err, errSessionBroken) {
			return classify(err, recogniseNft)
		}
	}
	_, err := b.run(ctx, argv...)
	return err
}

// Stop ends the long-lived nft child, if one runs; a later Open starts a
// new one. Teardown stops it too.
func (b *NFTables) Stop() error { return b.sess.stop() }

func (b *NFTables) setFor(o Opening) (nftSet, error) {
	for _, s := range b.sets {
		if s.v6 == o.Addr.Is6() {
			return s, nil
		}
	}
	return nftSet{}, fmt.Errorf("nftables: table %s %s cannot hold %s (family %s)", b.family, b.table, o.Addr, b.family)
}

// element is "{ ADDR . PROTO . PORT [timeout Ns] }" as argv words.
func element(o Opening, withTimeout bool) []string {
	e := []string{"{", o.Addr.String(), ".", o.Proto, ".", strconv.Itoa(int(o.Port))}
	if s := timeoutSeconds(o.Timeout); withTimeout && s > 0 {
		e = append(e, "timeout", strconv.FormatInt(s, 10)+"s")
	}
	return append(e, "}")
}

// elementCmd appends "VERB element FAMILY TABLE SET { ... }".
func (b *NFTables) elementCmd(argv []string, verb string, s nftSet, o Opening, withTimeout bool) []string {
	argv = append(argv, verb, "element", b.family, b.table, s.name)
	return append(argv, element(o, withTimeout)...)
}

// createArgv adds o's element only if it is not there yet ("create"
// fails with EEXIST otherwise): the fast path for a new opening, one
// command with no deletion in its transaction.
func (b *NFTables) createArgv(o Opening) ([]string, error) {
	s, err := b.setFor(o)
	if err != nil {
		return nil, err
	}
	return b.elementCmd([]string{"nft"}, "create", s, o, true), nil
}

// refreshArgv is one transaction: add (so that the delete cannot fail
// should the element have expired meanwhile), delete, add with the new
// timeout. It replaces the element's timeout on every kernel; nft 1.0.6
// has no "destroy", and kernels before 6.10 keep the old timeout on a
// plain "add". A transaction that deletes an element costs the kernel an
// RCU grace period (about 15 ms measured here), which is why it is not
// the first thing Open tries.
func (b *NFTables) refreshArgv(o Opening) ([]string, error) {
	s, err := b.setFor(o)
	if err != nil {
		return nil, err
	}
	argv := b.elementCmd([]string{"nft"}, "add", s, o, false)
	argv = b.elementCmd(append(argv, ";"), "delete", s, o, false)
	return b.elementCmd(append(argv, ";"), "add", s, o, true), nil
}

// closeArgv is one transaction: add then delete, which removes the
// element whether it was there or not.
func (b *NFTables) closeArgv(o Opening) ([]string, error) {
	s, err := b.setFor(o)
	if err != nil {
		return nil, err
	}
	argv := b.elementCmd([]string{"nft"}, "add", s, o, false)
	return b.elementCmd(append(argv, ";"), "delete", s, o, false), nil
}

func (b *NFTables) listChainArgv() []string {
	return []string{"nft", "-j", "list", "chain", b.family, b.table, b.chain}
}

// Check reports whether nft is installed and the admin's table and chain
// exist.
func (b *NFTables) Check(ctx context.Context) error {
	_, err := b.run(ctx, b.listChainArgv()...)
	if errors.Is(err, ErrNotExist) {
		return fmt.Errorf("nftables: chain %s in table %s %s does not exist: %w\nhint: create the table and the input chain that drops before starting knockdaemon (see examples/nftables.conf)", b.chain, b.family, b.table, err)
	}
	if err != nil {
		return checkError("nft", err, "install the nftables package and run the daemon as root (CAP_NET_ADMIN)")
	}
	return nil
}

// nftRule is the part of a rule in "nft -j list chain" that Setup needs.
type nftRule struct {
	Handle  uint64 `json:"handle"`
	Comment string `json:"comment"`
}

// ownRules lists the chain and returns the handles of the daemon's rules
// per set tag.
func (b *NFTables) ownRules(ctx context.Context) (map[string][]uint64, error) {
	out, err := b.run(ctx, b.listChainArgv()...)
	if err != nil {
		return nil, err
	}
	return parseNftChain(out)
}

func parseNftChain(out []byte) (map[string][]uint64, error) {
	var doc struct {
		Nftables []struct {
			Rule *nftRule `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nftables: cannot parse nft -j output: %w", err)
	}
	own := make(map[string][]uint64)
	for _, it := range doc.Nftables {
		if it.Rule != nil && strings.HasPrefix(it.Rule.Comment, commentPrefix+" ") {
			own[it.Rule.Comment] = append(own[it.Rule.Comment], it.Rule.Handle)
		}
	}
	return own, nil
}

// addSet appends "add set FAMILY TABLE SET { type ... ; flags timeout ; }",
// which creates the set or, when it exists with the same definition, does
// nothing.
func (b *NFTables) addSet(argv []string, s nftSet) []string {
	argv = append(argv, "add", "set", b.family, b.table, s.name, "{", "type")
	argv = append(argv, s.typ...)
	return append(argv, ";", "flags", "timeout", ";", "}")
}

// setupArgv is the transaction Setup runs given the rules already there:
// the sets (add is idempotent), the accept rule per family when missing,
// and the removal of duplicated rules.
func (b *NFTables) setupArgv(own map[string][]uint64) []string {
	argv := []string{"nft"}
	for i, s := range b.sets {
		if i > 0 {
			argv = append(argv, ";")
		}
		argv = b.addSet(argv, s)
		handles := own[s.tag]
		if len(handles) == 0 {
			argv = append(argv, ";", "insert", "rule", b.family, b.table, b.chain)
			argv = append(argv, s.saddr...)
			argv = append(argv, ".", "meta", "l4proto", ".", "th", "dport", "@"+s.name,
				"accept", "comment", `"`+s.tag+`"`)
		}
		for _, h := range handles[min(1, len(handles)):] {
			argv = append(argv, ";", "delete", "rule", b.family, b.table, b.chain, "handle", strconv.FormatUint(h, 10))
		}
	}
	return argv
}

// Setup creates the sets and inserts the accept rules at the top of the
// admin's chain, once: it lists the chain first and leaves rules that are
// already there in place. The changes are one nft transaction (all or
// nothing); the timeout probe after it only chooses the Open path.
func (b *NFTables) Setup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	own, err := b.ownRules(ctx)
	if errors.Is(err, ErrNotExist) {
		return fmt.Errorf("nftables setup: chain %s in table %s %s does not exist (the admin creates it): %w", b.chain, b.family, b.table, err)
	}
	if err != nil {
		return fmt.Errorf("nftables setup: %w", err)
	}
	argv := append(b.setupArgv(own), ";")
	argv = append(argv, b.probeArgv(probeTimeout1)...)
	if _, err := b.run(ctx, argv...); err != nil {
		if errors.Is(err, ErrExists) {
			return fmt.Errorf("nftables setup: a set named %s exists with another type or flags: %w", b.sets[0].name, err)
		}
		return fmt.Errorf("nftables setup: %w", err)
	}
	// Everything Setup changes is in the transaction above: it is
	// applied whole or not at all, so a failing Setup leaves nothing
	// half applied. What follows only reads which Open path the kernel
	// allows; when it fails, Open keeps the path every kernel has
	// (create, then the refresh transaction), and the probe element
	// expires by itself.
	b.addUpdates.Store(false)
	if _, err := b.run(ctx, append([]string{"nft"}, b.probeArgv(probeTimeout2)...)...); err != nil {
		return nil
	}
	out, err := b.run(ctx, "nft", "-j", "list", "set", b.family, b.table, b.sets[0].name)
	if err != nil {
		return nil
	}
	b.addUpdates.Store(probeUpdated(out, b.sets[0].v6))
	return nil
}

// The timeout-update probe. Linux 6.10 and later update an element's
// timeout on a plain "add element" (and drop it when the add carries
// none); older kernels leave an existing element untouched. Setup adds a
// probe element with a timeout of 60 s (in its transaction), then again
// with 30 s (a command of its own: a kernel may honour only the first
// update of an element within one transaction), and reads back which one
// the kernel kept; the timeouts are long enough to be read back on a
// loaded host. The element (TEST-NET address, protocol 255,
// port 0) can match no packet, List skips it, and it expires by itself
// within a minute on every kernel.
const (
	probeTimeout1 = 60
	probeTimeout2 = 30
)

func (b *NFTables) probeElem(s nftSet) string {
	if s.v6 {
		return "2001:db8::"
	}
	return "192.0.2.0"
}

// probeArgv is "add element SET { PROBE . 255 . 0 timeout Ns }".
func (b *NFTables) probeArgv(seconds int) []string {
	s := b.sets[0]
	return []string{"add", "element", b.family, b.table, s.name,
		"{", b.probeElem(s), ".", "255", ".", "0", "timeout", strconv.Itoa(seconds) + "s", "}"}
}

// probeUpdated reads the probe element's timeout from "nft -j list set"
// output: true when the second add replaced it.
func probeUpdated(out []byte, v6 bool) bool {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []struct {
					Elem *struct {
						Val     nftConcat `json:"val"`
						Timeout float64   `json:"timeout"`
					} `json:"elem"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if json.Unmarshal(out, &doc) != nil {
		return false
	}
	want := `"192.0.2.0"`
	if v6 {
		want = `"2001:db8::"`
	}
	for _, it := range doc.Nftables {
		if it.Set == nil {
			continue
		}
		for _, e := range it.Set.Elem {
			if e.Elem == nil || len(e.Elem.Val.Concat) != 3 || string(e.Elem.Val.Concat[0]) != want ||
				strings.Trim(string(e.Elem.Val.Concat[1]), `"`) != "255" {
				continue
			}
			return e.Elem.Timeout == probeTimeout2
		}
	}
	return false
}

// teardownArgv deletes the daemon's rules by handle and then its sets
// ("add set" first, so that deleting a set that is not there cannot fail).
func (b *NFTables) teardownArgv(own map[string][]uint64) []string {
	argv := []string{"nft"}
	sep := func() {
		if len(argv) > 1 {
			argv = append(argv, ";")
		}
	}
	for _, s := range b.sets {
		for _, h := range own[s.tag] {
			sep()
			argv = append(argv, "delete", "rule", b.family, b.table, b.chain, "handle", strconv.FormatUint(h, 10))
		}
	}
	for _, s := range b.sets {
		sep()
		argv = append(b.addSet(argv, s), ";", "delete", "set", b.family, b.table, s.name)
	}
	return argv
}

// Teardown deletes the daemon's rules and sets (and so every opening) in
// one transaction. A missing table or chain leaves nothing to remove.
func (b *NFTables) Teardown(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	own, err := b.ownRules(ctx)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nftables teardown: %w", err)
	}
	if _, err := b.run(ctx, b.teardownArgv(own)...); err != nil {
		return fmt.Errorf("nftables teardown: %w", err)
	}
	_ = b.sess.stop()
	return nil
}

// Open adds o's element with its timeout: one nft invocation. On kernels
// that update timeouts (see Setup's probe) that "add" also refreshes an
// element that is there; on others a "create" finds it and a second,
// atomic invocation replaces it with a fresh timeout.
func (b *NFTables) Open(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	argv, err := b.createArgv(o)
	if err != nil {
		return err
	}
	if b.addUpdates.Load() {
		argv[1] = "add" // add or replace, timeout included: one command
	}
	err = b.runFast(ctx, argv)
	if errors.Is(err, ErrExists) {
		argv, _ = b.refreshArgv(o)
		err = b.runFast(ctx, argv)
	}
	if err != nil {
		return fmt.Errorf("nftables open %s: %w", o, err)
	}
	return nil
}

// Close removes o's element; absent is not an error, nor is a missing set
// (after a teardown). One nft invocation.
func (b *NFTables) Close(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	argv, err := b.closeArgv(o)
	if err != nil {
		return err
	}
	err = b.runFast(ctx, argv)
	if errors.Is(err, ErrNotExist) {
		return nil // no set (or table): the opening cannot be there either
	}
	if err != nil {
		return fmt.Errorf("nftables close %s: %w", o, err)
	}
	return nil
}

// List returns the elements of the daemon's sets; Timeout is the time the
// kernel has left on each (0: none). A missing set holds nothing.
func (b *NFTables) List(ctx context.Context) ([]Opening, error) {
	var all []Opening
	for _, s := range b.sets {
		out, err := b.run(ctx, "nft", "-j", "list", "set", b.family, b.table, s.name)
		if errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("nftables list: %w", err)
		}
		elems, err := parseNftSet(out)
		if err != nil {
			return nil, fmt.Errorf("nftables list %s: %w", s.name, err)
		}
		for _, o := range elems {
			if o.Addr.Is6() == s.v6 {
				all = append(all, o)
			}
		}
	}
	return owned(all), nil
}

// parseNftSet reads the elements of "nft -j list set" output. An element
// is either a bare {"concat": [...]} or {"elem": {"val": {"concat":
// [...]}, "timeout": N, "expires": N}}.
func parseNftSet(out []byte) ([]Opening, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("cannot parse nft -j output: %w", err)
	}
	var res []Opening
	for _, it := range doc.Nftables {
		if it.Set == nil {
			continue
		}
		for _, raw := range it.Set.Elem {
			o, err := parseNftElem(raw)
			if errors.Is(err, errForeign) {
				continue
			}
			if err != nil {
				return nil, err
			}
			res = append(res, o)
		}
	}
	return res, nil
}

type nftConcat struct {
	Concat []json.RawMessage `json:"concat"`
}

func parseNftElem(raw json.RawMessage) (Opening, error) {
	var wrapped struct {
		Elem *struct {
			Val     nftConcat `json:"val"`
			Timeout float64   `json:"timeout"`
			Expires float64   `json:"expires"`
		} `json:"elem"`
		nftConcat
	}
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		return Opening{}, fmt.Errorf("element %s: %w", raw, err)
	}
	parts, remaining := wrapped.Concat, 0.0
	if wrapped.Elem != nil {
		parts = wrapped.Elem.Val.Concat
		remaining = wrapped.Elem.Expires
		if remaining == 0 {
			remaining = wrapped.Elem.Timeout
		}
	}
	if len(parts) != 3 {
		return Opening{}, fmt.Errorf("element %s: want addr . proto . port", raw)
	}
	var addr string
	if err := json.Unmarshal(parts[0], &addr); err != nil {
		return Opening{}, fmt.Errorf("element %s: address: %w", raw, err)
	}
	a, ok := parseHost(addr)
	if !ok {
		return Opening{}, fmt.Errorf("element %s: bad address %q", raw, addr)
	}
	// The protocol is a name ("tcp") or, for protocols without one, a number.
	proto := strings.Trim(string(parts[1]), `"`)
	p, ok := protoFromName(proto)
	if !ok {
		return Opening{}, fmt.Errorf("element %s: protocol %q: %w", raw, proto, errForeign)
	}
	port := strings.Trim(string(parts[2]), `"`)
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Opening{}, fmt.Errorf("element %s: bad port %s", raw, port)
	}
	o := Opening{Addr: a, Proto: p, Port: uint16(n)}
	if remaining > 0 && remaining < math.MaxInt64/float64(time.Second) {
		o.Timeout = time.Duration(remaining * float64(time.Second))
	}
	return o, nil
}
