package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/internal/buildinfo"
	"github.com/knockdaemon/knock/internal/parsecmd"
	"github.com/knockdaemon/knock/knockdimport"
	"github.com/knockdaemon/knock/rules"
	"github.com/knockdaemon/knock/state"
)

// Exit codes.
const (
	exitOK       = 0
	exitRuntime  = 1 // the daemon failed while running, or a command failed
	exitUsage    = 2 // bad flags or arguments
	exitConfig   = 3 // the configuration or a key file is unusable
	exitFirewall = 4 // the firewall backend is unusable
)

const exitHelp = `EXIT STATUS:
   0  ok
   1  runtime error (the log source failed, a command failed)
   2  usage error (bad flags or arguments)
   3  configuration error (the config file or a key file is unusable)
   4  firewall error (the backend's binaries are missing or unusable)
`

// failure is an error with an exit code and hints.
type failure struct {
	code  int
	err   error
	hints []string
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(code int, err error, hints ...string) error {
	return &failure{code: code, err: err, hints: hints}
}

// env is what a command may touch besides the arguments.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// signals, when set, replaces the process's signals (tests).
	signals chan os.Signal
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	return e.main(args)
}

func (e *env) main(args []string) int {
	app := e.app()
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	code := exitRuntime
	var f *failure
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &f):
		code = f.code
	case errors.As(err, &ec):
		code = ec.ExitCode()
	case isUsage(err):
		code = exitUsage
	}
	msg := strings.TrimPrefix(err.Error(), "knockdaemon: ")
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "hint:"):
			fmt.Fprintln(e.stderr, line)
		default:
			fmt.Fprintf(e.stderr, "knockdaemon: %s\n", line)
		}
	}
	if f != nil {
		for _, h := range f.hints {
			fmt.Fprintf(e.stderr, "hint: %s\n", h)
		}
	}
	return code
}

// isUsage recognises urfave/cli's own errors about flags and commands.
func isUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined", "flag needs an argument", "invalid value", "No help topic", "invalid boolean"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

var (
	flagDryRun = &cli.BoolFlag{Name: "dry-run", Usage: "decide everything but change no firewall: print the commands that would run"}
	flagSource = &cli.StringFlag{Name: "source", Usage: "log source, overriding [source] type: auto, kmsg, file, journald or stdin"}
	flagPath   = &cli.StringFlag{Name: "path", Usage: "log file for --source file, overriding [source] path"}
)

func (e *env) app() *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "knockdaemon %s\n", buildinfo.Version()) }
	return &cli.App{
		Name:  "knockdaemon",
		Usage: "open the firewall for encrypted port-knock sequences read from the firewall's log",
		Description: "knockdaemon follows the firewall's LOG output, assembles knock sequences per\n" +
			"source, decrypts them (docs/PROTOCOL.md) and opens what each user's policy allows,\n" +
			"closing it again on time. Without a command it runs the daemon.",
		Version:               buildinfo.Version(),
		Reader:                e.stdin,
		Writer:                e.stdout,
		ErrWriter:             e.stderr,
		HideHelpCommand:       true,
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitHelp,
		ExitErrHandler:        func(*cli.Context, error) {}, // main() reports and exits
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath, Usage: "configuration `FILE`"},
			flagDryRun, flagSource, flagPath,
		},
		Action: e.runCmd,
		Commands: []*cli.Command{
			{Name: "run", Usage: "run the daemon (the default)", Flags: []cli.Flag{flagDryRun, flagSource, flagPath}, Action: e.runCmd},
			{Name: "check", Usage: "check the configuration, the keys, the log source and the firewall backend (for ExecStartPre)",
				Flags: []cli.Flag{flagSource, flagPath}, Action: e.checkCmd},
			parsecmd.Command(),
			{Name: "keygen", Usage: "write a new random key to FILE (mode 0600, never overwrites)", ArgsUsage: "FILE", Action: e.keygenCmd},
			{Name: "status", Usage: "show active grants and counters (from the running daemon, else from the state file)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}, Action: e.statusCmd},
			{Name: "revoke", Usage: "close the openings of ADDR (on PORT only, when given) now", ArgsUsage: "ADDR [PORT]", Action: e.revokeCmd},
			{Name: "teardown", Usage: "remove the chains, sets and rules the backend created (daemon stopped)", Action: e.teardownCmd},
			{Name: "import-knockd", Usage: "convert a knockd.conf into [[door]] tables (TOML on stdout, warnings on stderr; docs/DOORS.md)",
				ArgsUsage: "FILE", Action: e.importKnockdCmd},
		},
	}
}

// flagString returns the value of a flag set on the command or on any
// parent (the global options), nearest first; urfave/cli would otherwise
// answer with the command's own unset default.
func flagString(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if localSet(x, name) {
			return x.String(name)
		}
	}
	return ""
}

func flagBool(c *cli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if localSet(x, name) {
			return x.Bool(name)
		}
	}
	return false
}

func flagSet(c *cli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if localSet(x, name) {
			return true
		}
	}
	return false
}

func localSet(x *cli.Context, name string) bool {
	if x == nil {
		return false
	}
	for _, n := range x.LocalFlagNames() {
		if n == name {
			return true
		}
	}
	return false
}

// loadConfig loads the config and applies the command-line overrides.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := c.String("config")
	cfg, err := config.Load(path)
	if err != nil {
		hint := "see docs/CONFIG.md for every key"
		if errors.Is(err, os.ErrNotExist) {
			hint = "create it (see examples/) or name another with -c FILE"
		}
		return nil, fail(exitConfig, err, hint)
	}
	if s := flagString(c, "source"); s != "" {
		switch s {
		case "auto", "kmsg", "file", "journald", "stdin":
		default:
			return nil, fail(exitUsage, fmt.Errorf("--source %q: want auto, kmsg, file, journald or stdin", s))
		}
		cfg.Source.Type = s
	}
	if p := flagString(c, "path"); p != "" {
		cfg.Source.Path = p
		if flagString(c, "source") == "" {
			cfg.Source.Type = "file"
		}
	}
	return cfg, nil
}

func loadKeys(cfg *config.Config) ([]cipher.Key, error) {
	keys, err := cfg.LoadKeys()
	if err != nil {
		var hints []string
		for _, e := range unjoin(err) {
			var se *config.SecretError
			if errors.As(e, &se) && se.Hint != "" {
				hints = append(hints, se.Hint)
			}
		}
		return nil, fail(exitConfig, fmt.Errorf("%s: %w", cfg.Path, err), hints...)
	}
	return keys, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (e *env) backend(cfg *config.Config, dry bool) (rules.Backend, error) {
	b := cfg.Backend
	be, err := rules.New(rules.Options{Type: b.Type, Netns: b.Netns, Chain: b.Chain, Table: b.Table, NftChain: b.NftChain,
		Set: b.Set, RuleRange: b.RuleRange, Open: b.Open, Close: b.Close, DryRun: dry, Output: e.stdout})
	if err != nil {
		return nil, fail(exitConfig, fmt.Errorf("%s: backend: %w", cfg.Path, err))
	}
	return be, nil
}

func backendCheck(ctx context.Context, be rules.Backend) error {
	if err := be.Check(ctx); err != nil {
		return fail(exitFirewall, fmt.Errorf("firewall backend %s is not usable: %w", be.Name(), err),
			"install the firewall tools the backend needs, run as root (CAP_NET_ADMIN), or try --dry-run")
	}
	return nil
}

func (e *env) runCmd(c *cli.Context) error {
	if c.Args().Present() {
		return fail(exitUsage, fmt.Errorf("unknown command %q (see knockdaemon --help)", c.Args().First()))
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	keys, err := loadKeys(cfg)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(daemon.ParseLevel(cfg.Daemon.LogLevel))
	log, logClose, err := daemon.NewLogger(cfg.Daemon.LogFormat, cfg.Daemon.LogOutput, level, e.stderr)
	if err != nil {
		return fail(exitConfig, err)
	}
	defer logClose.Close()
	dry := flagSet(c, "dry-run") && flagBool(c, "dry-run")
	be, err := e.backend(cfg, dry)
	if err != nil {
		return err
	}
	if dry || cfg.Backend.Type == "dry-run" {
		// A dry run must not leave grants in the real state file (the
		// next real start would apply them) nor take the real daemon's
		// control socket.
		tmp, err := os.MkdirTemp("", "knockdaemon-dry-run-")
		if err != nil {
			return fail(exitRuntime, err)
		}
		defer os.RemoveAll(tmp)
		cfg.Daemon.StateFile = filepath.Join(tmp, "state.json")
		cfg.Daemon.ControlSocket = filepath.Join(tmp, "control.sock")
		log.Info("dry run: no firewall command is run; state and control socket are temporary", "dir", tmp)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := backendCheck(ctx, be); err != nil {
		return err
	}
	src := cfg.Source
	// A kmsg or journald source resumes after a restart only as far back
	// as a knock can still be valid, and re-reads one sequence_timeout
	// before its saved position to rebuild knocks cut by the restart.
	srcOpts := daemon.SourceOptions{
		Logger: log, Stdin: e.stdin,
		MaxAge: daemon.ResumeMaxAge(cfg.Knock),
		Prime:  daemon.ResumePrime(cfg.Knock),
	}
	d, err := daemon.New(daemon.Options{
		Config: cfg, Keys: keys, Backend: be, Logger: log, LogLevel: level,
		OpenSource: func(resume daemonPosition) (daemonSource, error) {
			s, err := daemon.OpenSourceOpts(src, resume, srcOpts)
			if err != nil {
				return nil, fail(exitRuntime, err, "check [source] in the config, or pass --source and --path")
			}
			return s, nil
		},
	})
	if err != nil {
		return fail(exitConfig, err)
	}

	sigs := e.signals
	if sigs == nil {
		sigs = make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(sigs)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				var f *failure
				var fe *daemon.FirewallError
				switch {
				case errors.As(err, &f):
					return err
				case errors.As(err, &fe):
					return fail(exitFirewall, err, "run knockdaemon check; the firewall must be usable by this user (CAP_NET_ADMIN)")
				}
				return fail(exitRuntime, err)
			}
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(c, d, log)
				continue
			}
			log.Info("stopping", "signal", sig.String())
			cancel()
		}
	}
}

// reload re-reads the config and keys; a bad new config is refused and the
// running one stays.
func reload(c *cli.Context, d *daemon.Daemon, log *slog.Logger) {
	cfg, err := loadConfig(c)
	if err == nil {
		var keys []cipher.Key
		if keys, err = loadKeys(cfg); err == nil {
			err = d.Reload(cfg, keys)
		}
	}
	if err != nil {
		log.Error("reload refused; the running configuration stays", "err", err)
	}
}

func (e *env) checkCmd(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "config %s: ok (%d users, %d doors, backend %s, source %s)\n", cfg.Path, len(cfg.Users), len(cfg.Doors), cfg.Backend.Type, cfg.Source.Type)
	// Doors: one-time sequence files and the commands they run.
	for _, d := range cfg.Doors {
		warnings, err := d.Check()
		for _, w := range warnings {
			fmt.Fprintf(e.stderr, "knockdaemon: warning: %s\n", w)
		}
		if err != nil {
			return fail(exitConfig, err, "see docs/DOORS.md; `knockdaemon import-knockd` makes command paths absolute")
		}
	}
	if len(cfg.Doors) > 0 {
		fmt.Fprintf(e.stdout, "doors: ok (%d)\n", len(cfg.Doors))
	}
	keys, err := loadKeys(cfg)
	if err != nil {
		return err
	}
	for _, k := range keys {
		clear(k.Secret[:])
	}
	fmt.Fprintf(e.stdout, "keys: ok (%d loaded)\n", len(keys))
	if err := checkSource(cfg.Source); err != nil {
		return err
	}
	if err := daemon.CheckStateDir(cfg.Daemon.StateFile); err != nil {
		return fail(exitRuntime, fmt.Errorf("state file %s cannot be written: %w", cfg.Daemon.StateFile, err),
			"set [daemon] state_file to a writable place (the daemon would run from memory and lose grants at a restart)")
	}
	fmt.Fprintf(e.stdout, "state file %s: ok\n", cfg.Daemon.StateFile)
	be, err := e.backend(cfg, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := backendCheck(ctx, be); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "backend %s: ok\n", be.Name())
	return nil
}

func checkSource(s config.Source) error {
	var err error
	what := s.Type
	switch s.Type {
	case "stdin":
	case "file":
		what += " " + s.Path
		err = daemon.CheckReadable(s.Path)
	default:
		var src daemonSource
		src, err = daemon.OpenSource(s, daemonPosition{}, nil, nil)
		if err == nil {
			what = src.String()
		}
	}
	if err != nil {
		return fail(exitRuntime, fmt.Errorf("log source %s is not readable: %w", what, err),
			"run as root (or a user that can read the log), or set [source] type and path")
	}
	return nil
}

func (e *env) keygenCmd(c *cli.Context) error {
	if c.NArg() != 1 {
		return fail(exitUsage, errors.New("keygen: want exactly one FILE"))
	}
	path := c.Args().First()
	if err := cipher.KeyGen(path); err != nil {
		return fail(exitRuntime, fmt.Errorf("keygen: %w", err))
	}
	fmt.Fprintf(e.stdout, "wrote a new key to %s (mode 0600); give it to the user's knockclient and name it in a [[user]] key_file\n", path)
	return nil
}

// controlPath reads only the daemon table's socket and state file paths,
// so that status works with a config whose keys are unreadable.
func controlPaths(c *cli.Context) (*config.Config, error) {
	return loadConfig(c)
}

func (e *env) statusCmd(c *cli.Context) error {
	cfg, err := controlPaths(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st daemon.Status
	resp, err := daemon.Call(ctx, cfg.Daemon.ControlSocket, daemon.Request{Cmd: "status"})
	switch {
	case err == nil && resp.Status != nil:
		st = *resp.Status
	case errors.Is(err, daemon.ErrNotRunning):
		s, lerr := daemon.LoadState(cfg.Daemon.StateFile)
		if lerr != nil {
			return fail(exitRuntime, fmt.Errorf("the daemon is not running and its state file is unreadable: %w", lerr))
		}
		st = daemon.StatusFromState(s, time.Now())
	default:
		return fail(exitRuntime, fmt.Errorf("status: %w", err))
	}
	if c.Bool("json") {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(e.stdout, st)
	return nil
}

func printStatus(w io.Writer, st daemon.Status) {
	if st.From == "daemon" {
		fmt.Fprintf(w, "from: the running daemon (up %s, source %s, backend %s)\n", st.Now.Sub(st.Started).Round(time.Second), st.Source, st.Backend)
	} else {
		fmt.Fprintln(w, "from: the state file (the daemon is not running)")
	}
	if st.StateWriteFailing {
		fmt.Fprintln(w, "WARNING: the state file cannot be written; the daemon runs from memory")
	}
	daemon.SortGrants(st.Grants)
	fmt.Fprintf(w, "grants: %d\n", len(st.Grants))
	if len(st.Grants) > 0 {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  ADDR\tPROTO/PORT\tUSER\tSTATE\tREMAINING")
		for _, g := range st.Grants {
			rem := (time.Duration(g.Remaining) * time.Second).String()
			switch {
			case g.Unlimited && g.State == string(grant.StateOpen):
				rem = "unlimited"
			case g.State != string(grant.StateOpen):
				rem = "-"
				if g.LastError != "" {
					rem = fmt.Sprintf("close failed %d times: %s", g.Attempts, g.LastError)
				}
			}
			fmt.Fprintf(tw, "  %s\t%s/%d\t%s\t%s\t%s\n", g.Addr, g.Proto, g.Port, g.User, g.State, rem)
		}
		tw.Flush()
	}
	if c := st.Counters; c != nil {
		fmt.Fprintf(w, "lines %d, firewall %d, malformed %d, hits %d, candidates %d, accepted %d, lockouts %d\n",
			c.Lines, c.Firewall, c.Malformed, c.Hits, c.Candidates, c.Accepted, c.Lockouts)
		var rej []string
		for _, r := range []string{"check", "port0", "nokey", "policy_port", "policy_time", "policy_delegation", "policy_source", "replay", "lockout"} {
			if n := c.Rejected[r]; n > 0 {
				rej = append(rej, fmt.Sprintf("%s %d", r, n))
			}
		}
		if len(rej) == 0 {
			rej = []string{"none"}
		}
		fmt.Fprintf(w, "rejected: %s\n", strings.Join(rej, ", "))
		fmt.Fprintf(w, "openings: opened %d, extended %d, closed %d, open failed %d; sources tracked %d, locked out %d\n",
			c.Opened, c.Extended, c.Closed, c.OpenFailed, c.Sources, c.LockedOut)
	}
	if ds := st.Doors; ds != nil {
		fmt.Fprintf(w, "doors: hits %d, fired %d, not fired %d, progress reset %d, expired %d; sources tracked %d\n",
			ds.Hits, ds.Fired, ds.NotFired, ds.Resets, ds.Expired, ds.Sources)
	}
	for _, p := range st.DoorPending {
		fmt.Fprintf(w, "door %s: stop command for %s due %s\n", p.Door, p.Addr, p.Due.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "replay cache: %d entries\n", st.Replay)
}

func parseRevokeArgs(c *cli.Context) (netip.Addr, uint16, error) {
	if c.NArg() < 1 || c.NArg() > 2 {
		return netip.Addr{}, 0, fail(exitUsage, errors.New("revoke: want ADDR [PORT]"))
	}
	a, err := netip.ParseAddr(c.Args().Get(0))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, 0, fail(exitUsage, fmt.Errorf("revoke: %q is not an IP address", c.Args().Get(0)))
	}
	var port uint16
	if c.NArg() == 2 {
		n, err := strconv.ParseUint(c.Args().Get(1), 10, 16)
		if err != nil || n == 0 {
			return netip.Addr{}, 0, fail(exitUsage, fmt.Errorf("revoke: %q is not a port 1..65535", c.Args().Get(1)))
		}
		port = uint16(n)
	}
	return a.Unmap(), port, nil
}

func (e *env) revokeCmd(c *cli.Context) error {
	a, port, err := parseRevokeArgs(c)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := daemon.Call(ctx, cfg.Daemon.ControlSocket, daemon.Request{Cmd: "revoke", Addr: a.String(), Port: port})
	if err == nil {
		return e.reportRevoke("the running daemon", resp.Revoked, resp.Failed)
	}
	if !errors.Is(err, daemon.ErrNotRunning) {
		return fail(exitRuntime, fmt.Errorf("revoke: %w", err))
	}
	// No daemon: close through the backend and update the state file.
	be, err := e.backend(cfg, false)
	if err != nil {
		return err
	}
	if err := backendCheck(ctx, be); err != nil {
		return err
	}
	st, err := daemon.LoadState(cfg.Daemon.StateFile)
	if err != nil {
		return fail(exitRuntime, fmt.Errorf("revoke: %w", err))
	}
	match := func(addr netip.Addr, p uint16) bool { return addr.Unmap() == a && (port == 0 || p == port) }
	var revoked, failed []string
	closed := map[string]bool{}
	var keep []grant.Grant
	for _, g := range st.Grants {
		if !match(g.Addr, g.Port) {
			keep = append(keep, g)
			continue
		}
		o := rules.Opening{Addr: g.Addr, Proto: g.Proto, Port: g.Port}
		if err := be.Close(ctx, o); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", o, err))
			g.State = grant.StateClosing // the next start retries it
			keep = append(keep, g)
			continue
		}
		closed[o.String()] = true
		revoked = append(revoked, o.String())
	}
	if list, err := be.List(ctx); err == nil {
		for _, o := range list {
			if match(o.Addr, o.Port) && !closed[o.String()] {
				if err := be.Close(ctx, o); err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", o, err))
				} else {
					revoked = append(revoked, o.String())
				}
			}
		}
	}
	if len(keep) != len(st.Grants) || len(failed) > 0 {
		st.Version = daemon.StateVersion
		st.Grants = keep
		if err := state.Save(cfg.Daemon.StateFile, st); err != nil {
			return fail(exitRuntime, fmt.Errorf("revoke: closed, but the state file was not updated: %w", err))
		}
	}
	return e.reportRevoke("the firewall (the daemon is not running)", revoked, failed)
}

func (e *env) reportRevoke(via string, revoked, failed []string) error {
	for _, r := range revoked {
		fmt.Fprintf(e.stdout, "closed %s\n", r)
	}
	if len(failed) > 0 {
		return fail(exitFirewall, fmt.Errorf("revoke via %s: %d closes failed: %s", via, len(failed), strings.Join(failed, "; ")),
			"the daemon retries closes it knows about; check the firewall tools")
	}
	if len(revoked) == 0 {
		fmt.Fprintf(e.stdout, "nothing to revoke (via %s)\n", via)
	}
	return nil
}

func (e *env) importKnockdCmd(c *cli.Context) error {
	if c.NArg() != 1 {
		return fail(exitUsage, errors.New("import-knockd: want exactly one FILE (for example /etc/knockd.conf)"))
	}
	refused, err := knockdimport.Run(c.Args().First(), e.stdout, e.stderr)
	if err != nil {
		return fail(exitConfig, fmt.Errorf("import-knockd: %w", err))
	}
	if refused > 0 {
		return fail(exitConfig, fmt.Errorf("import-knockd: %d door(s) could not be converted and are left commented out", refused),
			"see the warnings above and docs/DOORS.md")
	}
	return nil
}

func (e *env) teardownCmd(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := daemon.Call(ctx, cfg.Daemon.ControlSocket, daemon.Request{Cmd: "status"}); err == nil {
		return fail(exitUsage, errors.New("teardown: the daemon is running"), "stop it first (systemctl stop knockdaemon); with close_on_exit it closes every opening itself")
	}
	be, err := e.backend(cfg, false)
	if err != nil {
		return err
	}
	if err := backendCheck(ctx, be); err != nil {
		return err
	}
	if err := be.Teardown(ctx); err != nil {
		return fail(exitFirewall, fmt.Errorf("teardown (%s): %w", be.Name(), err))
	}
	// What the grants opened is gone with the chains and sets; a later
	// start must not put it back.
	if st, err := daemon.LoadState(cfg.Daemon.StateFile); err == nil && len(st.Grants) > 0 {
		st.Grants = nil
		st.Version = daemon.StateVersion
		if err := state.Save(cfg.Daemon.StateFile, st); err != nil {
			return fail(exitRuntime, fmt.Errorf("teardown: removed, but the state file was not updated: %w", err))
		}
	}
	fmt.Fprintf(e.stdout, "removed what the %s backend created\n", be.Name())
	return nil
}
