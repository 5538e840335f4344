package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ipsetProto drives "ipset -", ipset's interactive mode: it reads one
// command per line and runs it at once (each command is committed and
// acknowledged before the next line is read; it is "ipset restore" that
// aggregates). Errors go to standard error, one or a few lines starting
// "ipset vN: "; success prints nothing there. Standard output only
// carries the "ipset> " prompts, fully buffered on a pipe, so it cannot
// delimit anything and is drained and dropped. Options given on a line
// stay set for the rest of the session (-exist): every request line of
// the backend carries -exist anyway.
//
// The sentinel is "create knockdaemon-sync knockdaemon.sync.N.": ipset
// refuses it in its own parser, before anything reaches the kernel,
// naming the unknown type ("Syntax error: typename
// 'knockdaemon.sync.N.' is unknown"), so the answer carries the request
// number. The handshake checks that this ipset answers so.
type ipsetProto struct{}

func (ipsetProto) argv() []string    { return []string{"ipset", "-"} }
func (ipsetProto) mergeStderr() bool { return false }

func ipsetToken(seq uint64) string {
	return "knockdaemon.sync." + strconv.FormatUint(seq, 10) + "."
}

func (ipsetProto) sentinel(seq uint64) string {
	return "create knockdaemon-sync " + ipsetToken(seq)
}

func (ipsetProto) isEnd(line string, seq uint64) bool {
	return strings.Contains(line, ipsetToken(seq))
}

func (p ipsetProto) handshake(write func(string) error, next func() (string, error)) error {
	if err := write(p.sentinel(0)); err != nil {
		return err
	}
	l, err := next()
	if err != nil {
		return err
	}
	if !p.isEnd(l, 0) {
		return fmt.Errorf("%w: ipset answers %q to %q, which does not name the request", errUnusable, l, p.sentinel(0))
	}
	return nil
}

// failure: any line before the sentinel's answer is an error message.
func (ipsetProto) failure(reply []string) (string, bool) {
	if len(reply) == 0 {
		return "", false
	}
	return strings.Join(reply, "\n"), true
}

// ipsetLine is the request line for argv ("ipset" and its arguments);
// ipset splits a line on white space, so no argument may hold any (nor a
// quote, which its splitter treats specially).
func ipsetLine(argv []string) (string, error) {
	if len(argv) < 2 || argv[0] != "ipset" {
		return "", errors.New("not an ipset command")
	}
	for _, a := range argv[1:] {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			return "", fmt.Errorf("ipset argument %q cannot be sent on a line", a)
		}
	}
	return strings.Join(argv[1:], " "), nil
}
