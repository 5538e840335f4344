package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/knockdaemon/knock/internal/buildinfo"
)

// Exit codes, documented in --help.
const (
	exitOK      = 0
	exitFailure = 1 // anything unexpected
	exitUsage   = 2 // bad command line: unknown flag, bad IP, port 0, time over 255 ...
	exitConfig  = 3 // configuration file unreadable or invalid, unknown profile
	exitKey     = 4 // key or passphrase file missing, unreadable or malformed; keygen refused
	exitResolve = 5 // host name does not resolve
	exitSend    = 6 // a knock could not be sent
	exitNotOpen = 7 // --wait-open: the port did not open in time
	// --then passes the command's own exit status through; 126: the
	// command cannot be run, 127: not found.
	exitCannotRun = 126
	exitNotFound  = 127
	// Interrupted (Ctrl-C) while knocking or waiting: 128 + SIGINT.
	exitInterrupted = 130
)

const exitCodesHelp = `EXIT STATUS:
   0    success
   1    unexpected failure
   2    bad command line (unknown flag, bad IP, port 0, time over 255, ...)
   3    configuration file invalid, unknown profile
   4    key or passphrase file missing, unreadable or malformed; keygen would overwrite
   5    host does not resolve
   6    a knock could not be sent (no route, blocked locally)
   7    --wait-open: the port did not open in time
   N    --then: the command's own exit status (126: cannot run it, 127: not found)
   130  interrupted while knocking or waiting

ENVIRONMENT:
   KNOCK_KEY_FILE    key file used when neither a flag nor the profile names one
   XDG_CONFIG_HOME   profiles are read from $XDG_CONFIG_HOME/knockclient/config.toml
                     (else ~/.config/knockclient/config.toml)`

// env is what the command reads from and writes to; tests replace it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	resolver       *net.Resolver
}

func newEnv() env {
	return env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now, resolver: net.DefaultResolver}
}

// cliError is an error with an exit code and an optional hint.
type cliError struct {
	code int
	msg  string
	hint string
}

func (e *cliError) Error() string { return e.msg }

func fail(code int, hint string, format string, args ...any) *cliError {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...), hint: hint}
}

// exitStatus carries a --then command's exit status through urfave/cli.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func init() {
	// -v is --verbose here; the version flag is --version only.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit", DisableDefaultText: true}
}

// run runs knockclient with args (args[0] is the program name) and returns
// the exit code. Errors go to e.stderr as "knockclient: message", with a
// "knockclient: hint: ..." line when the fix is known.
func run(ctx context.Context, args []string, e env) int {
	args, then, err := splitThen(args)
	if err == nil {
		args = reorderArgs(args)
	}
	app := newApp(e, then)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	if err == nil {
		return exitOK
	}
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	var ce *cliError
	if !errors.As(err, &ce) {
		ce = &cliError{code: exitFailure, msg: err.Error()}
	}
	fmt.Fprintf(e.stderr, "knockclient: %s\n", ce.msg)
	if ce.hint != "" {
		for _, l := range strings.Split(ce.hint, "\n") {
			fmt.Fprintf(e.stderr, "knockclient: hint: %s\n", l)
		}
	}
	return ce.code
}

func newApp(e env, then []string) *cli.App {
	app := &cli.App{
		Name:  "knockclient",
		Usage: "send encrypted port-knock sequences to a knockdaemon",
		Description: `knockclient encrypts a request (port to open, address to allow, minutes)
with a shared key and sends it as eight TCP connection attempts (or UDP
datagrams) to the knock ports. It needs no privileges. The protocol is
described in docs/PROTOCOL.md.

Examples:
   knockclient keygen ~/.config/knockclient/work.key
   knockclient knock gw.example.org --port 22 --time 10 --key-file ~/.config/knockclient/work.key
   knockclient knock work-ssh --wait-open --then -- ssh gw.example.org
   knockclient sequence --port 22 --at 1767225600 --key-file work.key

` + exitCodesHelp,
		Version:         buildinfo.Version(),
		Writer:          e.stdout,
		ErrWriter:       e.stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			help := "see 'knockclient --help'"
			if c.Command != nil && c.Command.Name != "" && c.Command.Name != "knockclient" {
				help = "see 'knockclient " + c.Command.Name + " --help'"
			}
			return fail(exitUsage, help, "%v", err)
		},
		Commands: []*cli.Command{knockCommand(e, then), sequenceCommand(e), keygenCommand(e)},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return fail(exitUsage, "commands: knock, sequence, keygen; see 'knockclient --help'", "unknown command %q", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
		if c.Description == "" {
			c.Description = exitCodesHelp
		} else {
			c.Description += "\n\n" + exitCodesHelp
		}
	}
	return app
}

// splitThen cuts the command after "--" off the arguments. A "--" that is
// the value of a flag (--ip -- is not a thing, but be exact) is not a
// separator.
func splitThen(args []string) ([]string, []string, error) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args[:i], args[i+1:], nil
		}
		if takesValue(a) && !strings.Contains(a, "=") {
			i++ // skip the flag's value
		}
	}
	return args, nil, nil
}

// boolFlags are the flags that take no value; every other flag does.
var boolFlags = map[string]bool{
	"h": true, "help": true, "version": true,
	"static": true, "udp": true, "4": true, "6": true, "wait-open": true, "then": true,
	"close": true, "q": true, "quiet": true, "v": true, "verbose": true,
}

func takesValue(a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	name := strings.TrimLeft(a, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		return false
	}
	return !boolFlags[name]
}

// reorderArgs moves a command's flags before its positional arguments, so
// that "knockclient knock HOST --port 22" works (urfave/cli v2 stops
// parsing flags at the first positional argument).
func reorderArgs(args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Global flags (--help, --version) come before the command name.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++
	}
	if i >= len(args) {
		return args
	}
	out := append([]string{}, args[:i+1]...) // program, global flags, command
	var pos []string
	for j := i + 1; j < len(args); j++ {
		a := args[j]
		if len(a) > 1 && a[0] == '-' {
			out = append(out, a)
			if takesValue(a) && j+1 < len(args) {
				j++
				out = append(out, args[j])
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(out, pos...)
}
