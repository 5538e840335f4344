package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// planner is implemented by every backend: it says which commands an
// operation runs, without running anything, for DryRun. present tells
// whether the opening is already open; slot is a small number unique among
// the open openings (ipfw derives its rule number from it).
type planner interface {
	Backend
	planSetup() [][]string
	planTeardown() [][]string
	planOpen(o Opening, present bool, slot int) ([][]string, error)
	planClose(o Opening, present bool, slot int) ([][]string, error)
}

// DryRun is a backend that runs nothing: it prints, one argv line each
// (FormatArgv), the commands the backend it plans for would run, and
// keeps the openings in memory so that List answers. It is what
// "knockdaemon run --dry-run" uses. Safe for concurrent use.
type DryRun struct {
	w      io.Writer
	plan   planner
	prefix []string
	mu     sync.Mutex
	open   map[key]dryEntry
}

type dryEntry struct {
	o    Opening
	slot int
}

// NewDryRun returns a dry run of plan (nil: the iptables backend with
// DefaultChain) writing to w. A non-empty netns prefixes every line with
// "ip netns exec NS", as NetnsRunner would.
func NewDryRun(w io.Writer, plan Backend, netns string) (*DryRun, error) {
	if w == nil {
		return nil, errors.New("dry-run: no output")
	}
	if plan == nil {
		plan = &IPTables{chain: DefaultChain}
	}
	if _, isDry := plan.(*DryRun); isDry {
		return nil, errors.New("dry-run: cannot plan a dry run")
	}
	p, ok := plan.(planner)
	if !ok {
		return nil, fmt.Errorf("dry-run: backend %s cannot be planned", plan.Name())
	}
	if err := ValidateNetns(netns); err != nil {
		return nil, err
	}
	d := &DryRun{w: w, plan: p, open: make(map[key]dryEntry)}
	if netns != "" {
		d.prefix = []string{"ip", "netns", "exec", netns}
	}
	return d, nil
}

// Name is "dry-run".
func (d *DryRun) Name() string { return "dry-run" }

// Planned is the backend the dry run prints commands for.
func (d *DryRun) Planned() Backend { return d.plan }

func (d *DryRun) print(cmds [][]string) error {
	for _, c := range cmds {
		if len(d.prefix) > 0 {
			c = append(append([]string(nil), d.prefix...), c...)
		}
		if _, err := io.WriteString(d.w, FormatArgv(c)+"\n"); err != nil {
			return fmt.Errorf("dry-run: %w", err)
		}
	}
	return nil
}

// Check has nothing to check: nothing is run.
func (d *DryRun) Check(ctx context.Context) error { return nil }

// Setup prints the setup commands for a firewall without the daemon's
// chains and sets.
func (d *DryRun) Setup(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.print(d.plan.planSetup())
}

// Teardown prints the teardown commands and forgets every opening.
func (d *DryRun) Teardown(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.open)
	return d.print(d.plan.planTeardown())
}

// Open prints the commands that would open o and remembers it.
func (d *DryRun) Open(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, present := d.open[o.key()]
	if !present {
		e.slot = d.freeSlot()
	}
	cmds, err := d.plan.planOpen(o, present, e.slot)
	if err != nil {
		return err
	}
	e.o = o
	d.open[o.key()] = e
	return d.print(cmds)
}

func (d *DryRun) freeSlot() int {
	used := make(map[int]bool, len(d.open))
	for _, e := range d.open {
		used[e.slot] = true
	}
	n := 0
	for used[n] {
		n++
	}
	return n
}

// Close prints the commands that would close o and forgets it.
func (d *DryRun) Close(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, present := d.open[o.key()]
	cmds, err := d.plan.planClose(o, present, e.slot)
	if err != nil {
		return err
	}
	delete(d.open, o.key())
	return d.print(cmds)
}

// List returns the openings opened and not closed since the dry run
// started (kernel timeouts are not simulated).
func (d *DryRun) List(ctx context.Context) ([]Opening, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	res := make([]Opening, 0, len(d.open))
	for _, e := range d.open {
		res = append(res, e.o)
	}
	sortOpenings(res)
	return res, nil
}

// --- plans of each backend; the real operations run the same argv. ---

func (b *IPTables) planSetup() [][]string {
	var cmds [][]string
	for _, tool := range xtablesTools {
		cmds = append(cmds, []string{tool, "-w", "-N", b.chain}, b.jumpArgv(tool, "-I"))
	}
	return cmds
}

func (b *IPTables) planTeardown() [][]string {
	var cmds [][]string
	for _, tool := range xtablesTools {
		cmds = append(cmds, b.jumpArgv(tool, "-D"), []string{tool, "-w", "-F", b.chain}, []string{tool, "-w", "-X", b.chain})
	}
	return cmds
}

func (b *IPTables) planOpen(o Opening, present bool, _ int) ([][]string, error) {
	if present {
		return nil, nil // -C finds it
	}
	return [][]string{b.ruleArgv("-A", o)}, nil
}

func (b *IPTables) planClose(o Opening, present bool, _ int) ([][]string, error) {
	if !present {
		return nil, nil
	}
	return [][]string{b.ruleArgv("-D", o)}, nil
}

func (b *NFTables) planSetup() [][]string { return [][]string{b.setupArgv(nil)} }

// planTeardown shows the lookup of the rules' handles and the deletion of
// the sets; the real Teardown deletes the rules it finds by handle in the
// same transaction.
func (b *NFTables) planTeardown() [][]string {
	return [][]string{b.listChainArgv(), b.teardownArgv(nil)}
}

func (b *NFTables) planOpen(o Opening, present bool, _ int) ([][]string, error) {
	argv, err := b.createArgv(o)
	if present {
		argv, err = b.refreshArgv(o)
	}
	return [][]string{argv}, err
}

func (b *NFTables) planClose(o Opening, _ bool, _ int) ([][]string, error) {
	argv, err := b.closeArgv(o)
	return [][]string{argv}, err
}

func (b *IPSet) planSetup() [][]string {
	var cmds [][]string
	for _, f := range b.families() {
		cmds = append(cmds, b.createArgv(f, false), b.matchArgv(f, "-I"))
	}
	return cmds
}

func (b *IPSet) planTeardown() [][]string {
	var cmds [][]string
	for _, f := range b.families() {
		cmds = append(cmds, b.matchArgv(f, "-D"), []string{"ipset", "destroy", f.set})
	}
	return cmds
}

func (b *IPSet) planOpen(o Opening, _ bool, _ int) ([][]string, error) {
	argv, err := b.openArgv(o)
	return [][]string{argv}, err
}

func (b *IPSet) planClose(o Opening, _ bool, _ int) ([][]string, error) {
	return [][]string{b.closeArgv(o)}, nil
}

func (b *IPFW) planSetup() [][]string { return nil }

// planTeardown shows the listing of the range; the real Teardown deletes
// the daemon's rules it finds there.
func (b *IPFW) planTeardown() [][]string { return [][]string{b.listArgv()} }

func (b *IPFW) planOpen(o Opening, present bool, slot int) ([][]string, error) {
	if present {
		return nil, nil
	}
	if b.lo+slot > b.hi {
		return nil, fmt.Errorf("ipfw: every rule number in %d-%d is in use; widen rule_range", b.lo, b.hi)
	}
	return [][]string{b.addArgv(b.lo+slot, o)}, nil
}

func (b *IPFW) planClose(o Opening, present bool, slot int) ([][]string, error) {
	if !present {
		return nil, nil
	}
	return [][]string{{"ipfw", "-q", "delete", strconv.Itoa(b.lo + slot)}}, nil
}

func (b *Exec) planSetup() [][]string    { return nil }
func (b *Exec) planTeardown() [][]string { return nil }

func (b *Exec) planOpen(o Opening, _ bool, _ int) ([][]string, error) {
	return [][]string{expand(b.open, o)}, nil
}

func (b *Exec) planClose(o Opening, _ bool, _ int) ([][]string, error) {
	return [][]string{expand(b.close, o)}, nil
}
