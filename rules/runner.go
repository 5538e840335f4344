package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Sentinel errors that a backend attaches to a failed command once it has
// recognised the tool's answer. Callers test them with errors.Is; nobody
// outside the backend's classifier looks at stderr.
var (
	// ErrExists: the chain, set, rule or element is already there.
	ErrExists = errors.New("already exists")
	// ErrNotExist: the chain, set, rule or element is not there.
	ErrNotExist = errors.New("does not exist")
	// ErrNotSupported: the backend cannot do this (for example List on
	// exec templates).
	ErrNotSupported = errors.New("not supported by this backend")
	// ErrNotFound: the command's binary is not installed (wraps
	// exec.ErrNotFound as well).
	ErrNotFound = errors.New("command not found")
)

// CmdError is a command that could not be started or exited unsuccessfully.
type CmdError struct {
	Argv []string
	// ExitCode is the exit status, or -1 when the command did not run to
	// completion (not found, killed, context cancelled).
	ExitCode int
	// Stderr is the command's standard error, trimmed and bounded.
	Stderr string
	// Err is the underlying error (exec, context) when there is one.
	Err error
	// kind is ErrExists or ErrNotExist when the backend recognised the
	// answer (see classify).
	kind error
}

// Error renders the command line, its exit status (or why it did not
// run) and its standard error.
func (e *CmdError) Error() string {
	var b strings.Builder
	b.WriteString(FormatArgv(e.Argv))
	switch {
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, ": exit status %d", e.ExitCode)
	case e.Err != nil:
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Stderr != "" {
		b.WriteString(": ")
		b.WriteString(e.Stderr)
	}
	return b.String()
}

// Unwrap exposes the underlying error and the recognised kind, so that
// errors.Is(err, ErrNotExist) and errors.Is(err, context.Canceled) work.
func (e *CmdError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	return errs
}

// classify attaches the kind that recognise finds in a failed command's
// answer. Each backend has exactly one recognise function per tool.
func classify(err error, recognise func(e *CmdError) error) error {
	var ce *CmdError
	if err != nil && errors.As(err, &ce) && ce.kind == nil && ce.ExitCode > 0 {
		ce.kind = recognise(ce)
	}
	return err
}

// DefaultCommandTimeout bounds a command run by ExecRunner when the
// context has no deadline: "iptables -w" waits for the xtables lock
// without limit, and a hung firewall command must not stall the daemon.
const DefaultCommandTimeout = 30 * time.Second

// ExecRunner runs commands with os/exec: argument vectors only, binaries
// looked up once and cached, a C locale (so that the answers the backends
// recognise are not translated), standard error captured, and the child's
// process group killed when the context ends or Timeout passes. The zero
// value is ready to use and safe for concurrent use.
type ExecRunner struct {
	// Timeout bounds each command whose context has no deadline; 0 means
	// DefaultCommandTimeout, a negative value no bound.
	Timeout time.Duration

	mu    sync.Mutex
	paths map[string]string
	env   []string
}

// maxStdout bounds what a command may print before it is treated as a
// failure; a listing of tens of thousands of openings stays far below it.
const (
	maxStdout = 64 << 20
	maxStderr = 16 << 10
)

// sbinDirs are searched when PATH does not hold a firewall tool, as is
// common for a daemon started with a minimal environment.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// LookPath returns the absolute path of name, caching the answer.
func (r *ExecRunner) LookPath(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty command name: %w", ErrNotFound)
	}
	if strings.Contains(name, "/") {
		fi, err := os.Stat(name)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("%s: not an executable file: %w (%w)", name, ErrNotFound, exec.ErrNotFound)
		}
		return name, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.paths[name]; ok {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range sbinDirs {
			cand := filepath.Join(dir, name)
			if fi, serr := os.Stat(cand); serr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
				p, err = cand, nil
				break
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w (%w)", name, ErrNotFound, exec.ErrNotFound)
	}
	if r.paths == nil {
		r.paths = make(map[string]string)
	}
	r.paths[name] = p
	return p, nil
}

func (r *ExecRunner) environ() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.env == nil {
		r.env = cEnviron(os.Environ())
	}
	return r.env
}

// cEnviron drops locale settings and sets LC_ALL=C; it makes sure PATH
// holds the sbin directories.
func cEnviron(in []string) []string {
	out := make([]string, 0, len(in)+2)
	hasPath := false
	for _, kv := range in {
		k, _, _ := strings.Cut(kv, "=")
		if k == "LANG" || k == "LANGUAGE" || strings.HasPrefix(k, "LC_") {
			continue
		}
		if k == "PATH" {
			hasPath = true
		}
		out = append(out, kv)
	}
	if !hasPath {
		out = append(out, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return append(out, "LC_ALL=C")
}

// resolve copies argv (callers may reuse theirs) and finds its binary,
// returning a *CmdError when argv is empty or the binary is missing.
func (r *ExecRunner) resolve(argv []string) ([]string, string, error) {
	if len(argv) == 0 {
		return nil, "", &CmdError{ExitCode: -1, Err: errors.New("empty argument vector")}
	}
	argv = append([]string(nil), argv...)
	path, err := r.LookPath(argv[0])
	if err != nil {
		return nil, "", &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	return argv, path, nil
}

// Run runs argv and returns its standard output. A command that fails
// returns a *CmdError.
func (r *ExecRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	argv, path, err := r.resolve(argv)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	if _, has := ctx.Deadline(); !has && r.Timeout >= 0 {
		d := r.Timeout
		if d == 0 {
			d = DefaultCommandTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = r.environ()
	stdout := &limitedBuffer{max: maxStdout}
	stderr := &limitedBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Kill the whole process group: an exec template may start children.
	setProcessGroup(cmd)
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	if err == nil && stdout.overflow {
		return nil, &CmdError{Argv: argv, ExitCode: -1, Err: fmt.Errorf("output larger than %d bytes", maxStdout)}
	}
	if err != nil {
		ce := &CmdError{Argv: argv, ExitCode: -1, Stderr: strings.TrimSpace(stderr.String())}
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			ce.Err = ctx.Err()
		case errors.As(err, &ee) && ee.Exited():
			ce.ExitCode = ee.ExitCode()
		default:
			ce.Err = err
		}
		return nil, ce
	}
	return stdout.Bytes(), nil
}

// limitedBuffer keeps the first max bytes written and swallows the rest,
// so a runaway command cannot exhaust memory and is never blocked on a
// full pipe.
//
// The buffer is a field, not embedded: an embedded bytes.Buffer would lend
// its ReadFrom to io.Copy, which would then bypass the limit.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.overflow = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }

// NetnsRunner runs every command inside the named network namespace as
// "ip netns exec NS argv...", for a daemon on the host that guards a
// namespace's firewall (the [backend] netns option). An empty ns returns
// inner unchanged.
func NetnsRunner(inner Runner, ns string) Runner {
	if ns == "" {
		return inner
	}
	return &netnsRunner{inner: inner, ns: ns}
}

type netnsRunner struct {
	inner Runner
	ns    string
}

func (n *netnsRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	full := make([]string, 0, len(argv)+4)
	full = append(full, "ip", "netns", "exec", n.ns)
	full = append(full, argv...)
	return n.inner.Run(ctx, full)
}

// ValidateNetns checks a network namespace name as "ip netns" accepts it:
// a single path component under /run/netns.
func ValidateNetns(ns string) error {
	switch {
	case ns == "":
		return nil
	case len(ns) > 255, ns == ".", ns == "..", strings.ContainsAny(ns, "/\x00"), strings.HasPrefix(ns, "-"):
		return fmt.Errorf("invalid network namespace name %q", ns)
	}
	for _, c := range ns {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("invalid network namespace name %q", ns)
		}
	}
	return nil
}

// FormatArgv renders argv as one line a POSIX shell would split back into
// the same arguments: plain words stay as they are, anything else is
// single-quoted. It is for messages, dry-run output and tests; commands
// are never run through a shell.
func FormatArgv(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

func quoteArg(a string) string {
	if a == "" {
		return "''"
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@%+=:,./_-{}", c)) {
			return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return a
}
