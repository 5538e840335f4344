package rules

import (
	"errors"
	"fmt"
	"strings"
)

// nftProto drives "nft -i": nft reads one command line at a time from
// standard input and runs it as one transaction (one netlink batch,
// every acknowledgement received) before it reads the next; errors go to
// standard error as "Error: ..." followed by the command line and a
// caret line, success prints nothing. Standard error is merged into
// standard output so the order is kept.
//
// The sentinel is "describe meta length": answered by nft itself with
// one line on standard output ("meta expression, datatype integer
// (integer), 32 bits" in nftables 0.9 to 1.1), without a netlink round
// trip. The handshake learns that line from the running nft (sent twice,
// both answers must be the same single line), so its wording may vary
// between versions; an nft whose describe answers differently (several
// lines, an error) is not used: the backend forks instead.
type nftProto struct {
	marker string // the sentinel's answer, learned by handshake
}

const nftSentinel = "describe meta length"

func (p *nftProto) argv() []string    { return []string{"nft", "-i"} }
func (p *nftProto) mergeStderr() bool { return true }

func (p *nftProto) handshake(write func(string) error, next func() (string, error)) error {
	if err := write(nftSentinel + "\n" + nftSentinel); err != nil {
		return err
	}
	first, err := next()
	if err != nil {
		return err
	}
	second, err := next()
	if err != nil {
		return err
	}
	if first == "" || first != second || strings.HasPrefix(first, "Error") {
		return fmt.Errorf("%w: nft answers %q to %q, then %q: not a one-line answer to delimit requests with", errUnusable, first, nftSentinel, second)
	}
	p.marker = first
	return nil
}

func (p *nftProto) sentinel(uint64) string { return nftSentinel }

func (p *nftProto) isEnd(line string, _ uint64) bool { return line == p.marker }

// failure: any "Error:" line fails the request; the whole reply is the
// error text, as nft would have printed it to standard error.
func (p *nftProto) failure(reply []string) (string, bool) {
	for _, l := range reply {
		if strings.HasPrefix(l, "Error:") {
			return strings.Join(reply, "\n"), true
		}
	}
	return "", false
}

// nftLine is the request line for argv ("nft" and its arguments): nft
// itself joins its arguments with single spaces into one command buffer,
// so the line is the same command.
func nftLine(argv []string) (string, error) {
	if len(argv) < 2 || argv[0] != "nft" {
		return "", errors.New("not an nft command")
	}
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, "-") {
			return "", fmt.Errorf("nft option %q cannot be sent to a running nft", a)
		}
	}
	return strings.Join(argv[1:], " "), nil
}
