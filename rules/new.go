package rules

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Types are the backend type names New accepts, as in the [backend] type
// key of the configuration.
var Types = []string{"iptables", "nftables", "ipset", "ipfw", "exec", "dry-run"}

// Options is the [backend] section of the configuration (see
// docs/ARCHITECTURE.md); the config package maps TOML onto it. Keys that
// do not concern Type are ignored.
type Options struct {
	// Type is one of Types.
	Type string
	// Netns runs every firewall command inside this named network
	// namespace (ip netns exec NAME ...), see NetnsRunner.
	Netns string
	// Chain is the iptables chain (default DefaultChain).
	Chain string
	// Table is the nftables table as "FAMILY NAME", for example
	// "inet filter", and NftChain its chain that drops.
	Table    string
	NftChain string
	// Set is the base name of the ipset and nftables sets (default
	// DefaultSet; the IPv6 set is Set+"6").
	Set string
	// RuleRange is the ipfw rule number range (default DefaultRuleRange).
	RuleRange string
	// Open and Close are the exec templates.
	Open, Close string

	// DryRun prints the commands Type would run to Output (default
	// os.Stdout) instead of running them; Type "dry-run" is a dry run of
	// iptables.
	DryRun bool
	Output io.Writer
	// Runner runs the commands (default a new ExecRunner); Netns wraps it.
	Runner Runner
}

// New makes the backend opts describe, validating its options.
func New(opts Options) (Backend, error) {
	if err := ValidateNetns(opts.Netns); err != nil {
		return nil, fmt.Errorf("backend netns: %w", err)
	}
	typ := opts.Type
	dry := opts.DryRun
	if typ == "dry-run" {
		typ, dry = "iptables", true
	}
	r := opts.Runner
	if r == nil {
		r = new(ExecRunner)
	}
	r = NetnsRunner(r, opts.Netns)
	var (
		b   Backend
		err error
	)
	switch typ {
	case "iptables":
		b, err = NewIPTables(r, opts.Chain)
	case "nftables":
		// The documented defaults: chain input of table inet filter.
		table, chain := opts.Table, opts.NftChain
		if table == "" {
			table = DefaultNftTable
		}
		if chain == "" {
			chain = DefaultNftChain
		}
		b, err = NewNFTables(r, table, chain, opts.Set)
	case "ipset":
		b, err = NewIPSet(r, opts.Set)
	case "ipfw":
		b, err = NewIPFW(r, opts.RuleRange)
	case "exec":
		b, err = NewExec(r, opts.Open, opts.Close)
	case "":
		return nil, fmt.Errorf("no backend type; want one of %s", strings.Join(Types, ", "))
	default:
		return nil, fmt.Errorf("unknown backend %q; want one of %s", opts.Type, strings.Join(Types, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", typ, err)
	}
	if !dry {
		return b, nil
	}
	w := opts.Output
	if w == nil {
		w = os.Stdout
	}
	return NewDryRun(w, b, opts.Netns)
}
