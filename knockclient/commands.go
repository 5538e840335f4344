package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/client"
)

// requestFlags are shared by knock and sequence. They are built afresh
// for every run: urfave/cli keeps parse state in flag values.
func requestFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "profile", Aliases: []string{"P"}, Usage: "use the named profile from the configuration file"},
		&cli.StringFlag{Name: "config", Usage: "configuration file with profiles", DefaultText: "$XDG_CONFIG_HOME/knockclient/config.toml"},
		&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Usage: "port to open, 1..65535"},
		&cli.IntFlag{Name: "time", Aliases: []string{"t"}, Value: defaultMinutes, Usage: "minutes to keep it open: 1..254, 0 = no limit, 255 = close now"},
		&cli.BoolFlag{Name: "close", Usage: "close an opening now (same as --time 255)"},
		&cli.StringFlag{Name: "ip", Usage: "IPv4 address to allow (default: the address the knocks come from)"},
		&cli.StringFlag{Name: "key-file", Aliases: []string{"k"}, Usage: "key file (base64 of 32 bytes); else the profile's, else $KNOCK_KEY_FILE"},
		&cli.StringFlag{Name: "passphrase-file", Usage: "file whose first line is the passphrase (instead of a key file)"},
		&cli.BoolFlag{Name: "static", Usage: "static key mode (no clock; must match the daemon's mode for this key)"},
		&cli.IntFlag{Name: "base", Value: cipher.DefaultBase, Usage: "first knock port; knocks go to base..base+255"},
	}
}

const defaultMinutes = 60

func knockCommand(e env, then []string) *cli.Command {
	flags := append(requestFlags(),
		&cli.BoolFlag{Name: "udp", Usage: "knock with UDP datagrams instead of TCP connection attempts"},
		&cli.DurationFlag{Name: "delay", Value: client.DefaultGap, Usage: "gap between knocks"},
		&cli.BoolFlag{Name: "4", Usage: "use IPv4 only"},
		&cli.BoolFlag{Name: "6", Usage: "use IPv6 only"},
		&cli.BoolFlag{Name: "wait-open", Usage: "after knocking, probe the port until it accepts a connection"},
		&cli.DurationFlag{Name: "wait-timeout", Value: client.DefaultWaitTimeout, Usage: "how long --wait-open probes"},
		&cli.BoolFlag{Name: "then", Usage: "after a successful knock (and --wait-open), run the command given after --"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print each knock"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
	)
	return &cli.Command{
		Name:      "knock",
		Usage:     "send a knock sequence to HOST or to a profile's host",
		ArgsUsage: "HOST|PROFILE [--then -- COMMAND [ARGS...]]",
		Flags:     flags,
		Action:    func(c *cli.Context) error { return doKnock(c, e, then) },
	}
}

func sequenceCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "sequence",
		Usage:     "print the eight knock ports without sending them",
		ArgsUsage: "[PROFILE]",
		Description: `Prints the knock ports, space separated, for other knock tools, phone apps
and test vectors. --at gives the time (unix seconds) for timed keys.`,
		Flags: append(requestFlags(),
			&cli.Int64Flag{Name: "at", Usage: "unix time to encode for (default: now)"}),
		Action: func(c *cli.Context) error { return doSequence(c, e) },
	}
}

func keygenCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "write a new random key file (mode 0600, never overwrites)",
		ArgsUsage: "FILE",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"}},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return fail(exitUsage, "usage: knockclient keygen FILE", "keygen needs exactly one FILE argument")
			}
			path := c.Args().First()
			if err := cipher.KeyGen(path); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fail(exitKey, "choose another name, or remove the old key file first if you really mean to replace it", "%v", err)
				}
				return fail(exitKey, "", "cannot create key file: %v", err)
			}
			if !c.Bool("quiet") {
				fmt.Fprintf(e.stderr, "knockclient: wrote a new key to %s (mode 0600); install the same file as the user's key_file on the server\n", path)
			}
			return nil
		},
	}
}

// plan is a fully resolved request: flags over profile over defaults.
type plan struct {
	host     string
	family   client.Family
	key      cipher.Key
	req      cipher.Request
	base     uint16
	udp      bool
	gap      time.Duration
	waitOpen bool
	waitFor  time.Duration
	then     []string
	verbose  bool
	quiet    bool
}

// loadProfile returns the profile to use: the -P profile, else the first
// argument when it names a profile, else [defaults]. fromArg reports that
// the first argument was a profile name (not a host).
func loadProfile(c *cli.Context, e env, firstArgMayBeProfile bool) (p client.Profile, cfg *client.Config, fromArg bool, err error) {
	path := c.String("config")
	explicit := path != ""
	if !explicit {
		path, err = client.DefaultConfigPath(e.getenv)
		if err != nil {
			// No home: work without profiles unless one is asked for.
			if c.IsSet("profile") {
				return p, nil, false, fail(exitConfig, "pass --config FILE", "%v", err)
			}
			return p, &client.Config{}, false, nil
		}
	}
	cfg, err = client.LoadConfig(path, !explicit, e.getenv)
	if err != nil {
		var ce *client.ConfigError
		if errors.As(err, &ce) {
			return p, nil, false, fail(exitConfig, "see 'knockclient knock --help' for the profile keys", "%v", err)
		}
		return p, nil, false, fail(exitConfig, "", "cannot read configuration: %v", err)
	}
	if name := c.String("profile"); name != "" {
		prof, ok := cfg.Profile(name)
		if !ok {
			return p, cfg, false, fail(exitConfig, profilesHint(cfg), "unknown profile %q", name)
		}
		return prof, cfg, false, nil
	}
	if firstArgMayBeProfile && c.Args().Len() > 0 {
		if prof, ok := cfg.Profile(c.Args().First()); ok {
			return prof, cfg, true, nil
		}
	}
	return cfg.DefaultsProfile(), cfg, false, nil
}

func profilesHint(cfg *client.Config) string {
	names := cfg.Names()
	if len(names) == 0 {
		if cfg.Path == "" {
			return "no configuration file"
		}
		return fmt.Sprintf("%s defines no profiles", cfg.Path)
	}
	return fmt.Sprintf("profiles in %s: %s", cfg.Path, strings.Join(names, ", "))
}

// buildRequest resolves the key, mode, request and base from flags and
// profile.
func buildRequest(c *cli.Context, e env, p client.Profile, pl *plan) error {
	// Port.
	port := int64(0)
	switch {
	case c.IsSet("port"):
		port = int64(c.Int("port"))
	case p.Port != nil:
		port = *p.Port
	default:
		return fail(exitUsage, "pass --port PORT (the port the daemon should open), or set port in the profile", "no port to open")
	}
	if port == 0 {
		return fail(exitUsage, "", "port 0 is not a valid port to open (want 1..65535)")
	}
	if port < 0 || port > 65535 {
		return fail(exitUsage, "", "port %d out of range 1..65535", port)
	}
	pl.req.Port = uint16(port)

	// Time.
	minutes := int64(defaultMinutes)
	if p.Time != nil {
		minutes = *p.Time
	}
	if c.IsSet("time") {
		minutes = int64(c.Int("time"))
	}
	if c.Bool("close") {
		if c.IsSet("time") && c.Int("time") != cipher.TimeClose {
			return fail(exitUsage, "", "--close and --time %d contradict each other", c.Int("time"))
		}
		minutes = cipher.TimeClose
	}
	if minutes < 0 || minutes > 255 {
		return fail(exitUsage, "0 = no time limit, 1..254 = minutes, 255 = close now (or --close)", "time %d out of range 0..255", minutes)
	}
	pl.req.Time = uint8(minutes)

	// Address to allow.
	ip := ""
	if p.IP != nil {
		ip = *p.IP
	}
	if c.IsSet("ip") {
		ip = c.String("ip")
	}
	a, err := client.ParseAllow(ip)
	if err != nil {
		hint := ""
		if errors.Is(err, cipher.ErrAllowNotIP4) {
			hint = "leave out --ip to allow the address the knocks come from; that works for IPv6 too"
		}
		return fail(exitUsage, hint, "bad --ip: %v", strings.TrimSuffix(err.Error(), ": "+cipher.ErrAllowNotIP4.Error()))
	}
	pl.req.Allow = a

	// Base.
	base := int64(cipher.DefaultBase)
	if p.Base != nil {
		base = *p.Base
	}
	if c.IsSet("base") {
		base = int64(c.Int("base"))
	}
	if base < 1 || base > cipher.MaxBase {
		return fail(exitUsage, "the daemon's [knock] base must be the same", "base %d out of range 1..%d", base, cipher.MaxBase)
	}
	pl.base = uint16(base)

	// Mode.
	pl.key.Mode = cipher.Timed
	if p.Mode != nil {
		pl.key.Mode = *p.Mode
	}
	if c.IsSet("static") {
		pl.key.Mode = cipher.Timed
		if c.Bool("static") {
			pl.key.Mode = cipher.Static
		}
	}
	return loadSecret(c, e, p, pl)
}

// loadSecret picks the key: --key-file or --passphrase-file, else the
// profile's, else $KNOCK_KEY_FILE.
func loadSecret(c *cli.Context, e env, p client.Profile, pl *plan) error {
	kf, pf := c.String("key-file"), c.String("passphrase-file")
	if c.IsSet("key-file") && c.IsSet("passphrase-file") {
		return fail(exitUsage, "", "give --key-file or --passphrase-file, not both")
	}
	if kf == "" && pf == "" {
		switch {
		case p.KeyFile != nil:
			kf = *p.KeyFile
		case p.PassphraseFile != nil:
			pf = *p.PassphraseFile
		default:
			kf = e.getenv("KNOCK_KEY_FILE")
		}
	}
	var err error
	switch {
	case kf != "":
		pl.key.Name = kf
		pl.key.Secret, err = cipher.LoadKeyFile(kf)
		if err == nil {
			warnPerm(e, kf)
		}
	case pf != "":
		pl.key.Name = pf
		pl.key.Secret, err = cipher.LoadPassphraseFile(pf)
		if err == nil {
			warnPerm(e, pf)
		}
	default:
		return fail(exitUsage, "pass --key-file FILE or --passphrase-file FILE, set KNOCK_KEY_FILE, or use a profile with key_file\ncreate a key with: knockclient keygen FILE", "no key given")
	}
	if err != nil {
		hint := "a key file holds 32 random bytes as base64 on one line, as 'knockclient keygen FILE' writes"
		if errors.Is(err, fs.ErrNotExist) {
			hint = "create one with 'knockclient keygen FILE' and install the same file on the server"
		} else if errors.Is(err, fs.ErrPermission) {
			hint = "the key file must be readable by the user running knockclient"
		}
		return fail(exitKey, hint, "cannot use key: %v", err)
	}
	return nil
}

func warnPerm(e env, path string) {
	var ie *cipher.InsecureKeyFileError
	if err := cipher.CheckKeyFilePerm(path); errors.As(err, &ie) {
		fmt.Fprintf(e.stderr, "knockclient: warning: %v\n", err)
	}
}

func doSequence(c *cli.Context, e env) error {
	if c.Args().Len() > 1 {
		return fail(exitUsage, "usage: knockclient sequence [PROFILE] [flags]", "too many arguments: %s", strings.Join(c.Args().Slice(), " "))
	}
	p, cfg, fromArg, err := loadProfile(c, e, true)
	if err != nil {
		return err
	}
	if c.Args().Len() == 1 && !fromArg {
		return fail(exitConfig, profilesHint(cfg), "unknown profile %q", c.Args().First())
	}
	var pl plan
	if err := buildRequest(c, e, p, &pl); err != nil {
		return err
	}
	now := e.now()
	if c.IsSet("at") {
		now = time.Unix(c.Int64("at"), 0)
	}
	ports, err := cipher.Encode(pl.key, pl.req, now, pl.base)
	if err != nil {
		return fail(exitUsage, "", "%v", err)
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	_, err = fmt.Fprintln(e.stdout, strings.Join(s, " "))
	return err
}

func doKnock(c *cli.Context, e env, then []string) error {
	p, cfg, fromArg, err := loadProfile(c, e, true)
	if err != nil {
		return err
	}
	var pl plan
	if err := planKnock(c, e, p, cfg, fromArg, then, &pl); err != nil {
		return err
	}
	ctx := c.Context
	dst, err := client.Resolve(ctx, e.resolver, pl.host, pl.family)
	if err != nil {
		if ctx.Err() != nil {
			return fail(exitInterrupted, "", "interrupted")
		}
		hint := "check the name, or give an IP address"
		if !fromArg && c.String("profile") == "" && cfg != nil && !strings.ContainsAny(pl.host, ".:") {
			hint = fmt.Sprintf("%q is not a profile either; %s", pl.host, profilesHint(cfg))
		}
		if pl.family != client.AnyFamily && errors.Is(err, client.ErrNoAddress) {
			hint = "drop -4/-6, or use the other family"
		}
		return fail(exitResolve, hint, "%v", err)
	}
	ports, err := cipher.Encode(pl.key, pl.req, e.now(), pl.base)
	if err != nil {
		return fail(exitUsage, "", "%v", err)
	}
	proto := "tcp"
	if pl.udp {
		proto = "udp"
	}
	opt := client.SendOptions{UDP: pl.udp, Gap: pl.gap}
	if pl.verbose {
		opt.OnKnock = func(i int, port uint16) {
			fmt.Fprintf(e.stderr, "knockclient: knock %d/8 %s %s\n", i+1, proto, netip.AddrPortFrom(dst, port))
		}
	}
	if err := client.Send(ctx, dst, ports, opt); err != nil {
		if ctx.Err() != nil {
			return fail(exitInterrupted, "", "interrupted")
		}
		return fail(exitSend, "a route or a local firewall stops the knocks; check that you can reach "+dst.String(), "%v", err)
	}
	if pl.verbose && !pl.quiet {
		fmt.Fprintf(e.stderr, "knockclient: sent %s to %s (%s)\n", pl.req, dst, pl.key.Mode)
	}
	if pl.waitOpen {
		target := netip.AddrPortFrom(dst, pl.req.Port)
		took, err := client.WaitOpen(ctx, target, pl.waitFor)
		if err != nil {
			if ctx.Err() != nil {
				return fail(exitInterrupted, "", "interrupted")
			}
			return fail(exitNotOpen, notOpenHint(err, pl), "%v", err)
		}
		if !pl.quiet {
			fmt.Fprintf(e.stderr, "knockclient: %s open after %v\n", target, took.Round(time.Millisecond))
		}
	}
	if len(pl.then) > 0 {
		return runThen(e, pl.then)
	}
	return nil
}

func notOpenHint(err error, pl plan) string {
	h := []string{
		"is the key the daemon's key for you (same file, same mode: " + pl.key.Mode.String() + ")?",
		"timed keys need the clocks of both hosts within about 30 s of each other (NTP)",
		"is the daemon running, and does the firewall LOG the knock ports " + fmt.Sprintf("%d..%d", pl.base, int(pl.base)+255) + "? see the daemon's log for 'rejected'",
		"does your key's policy allow this port and time?",
	}
	var ne *client.NotOpenError
	if errors.As(err, &ne) && ne.Refused {
		h = append(h, "the port answers with a reset: maybe the rule opened but nothing listens on it, or the firewall rejects instead of dropping")
	}
	return strings.Join(h, "\n")
}

// planKnock fills pl for the knock command.
func planKnock(c *cli.Context, e env, p client.Profile, cfg *client.Config, fromArg bool, then []string, pl *plan) error {
	args := c.Args().Slice()
	switch {
	case fromArg:
		args = args[1:]
		if p.Host == nil {
			return fail(exitConfig, "add host = \"...\" to the profile", "profile %q has no host", c.Args().First())
		}
		pl.host = *p.Host
	case len(args) > 0:
		pl.host = args[0]
		args = args[1:]
	case p.Host != nil:
		pl.host = *p.Host
	default:
		return fail(exitUsage, "usage: knockclient knock HOST|PROFILE --port PORT [flags]", "no host to knock on")
	}
	if len(args) > 0 {
		return fail(exitUsage, "to run a command after knocking, use --then -- COMMAND ARGS...", "unexpected arguments: %s", strings.Join(args, " "))
	}
	if err := buildRequest(c, e, p, pl); err != nil {
		return err
	}
	if p.Family != nil {
		pl.family = client.IPv4
		if *p.Family == 6 {
			pl.family = client.IPv6
		}
	}
	if c.Bool("4") && c.Bool("6") {
		return fail(exitUsage, "", "-4 and -6 exclude each other")
	}
	if c.Bool("4") {
		pl.family = client.IPv4
	} else if c.Bool("6") {
		pl.family = client.IPv6
	}
	if p.UDP != nil {
		pl.udp = *p.UDP
	}
	if c.IsSet("udp") {
		pl.udp = c.Bool("udp")
	}
	pl.gap = client.DefaultGap
	if p.Delay != nil {
		pl.gap = p.Delay.Duration
	}
	if c.IsSet("delay") {
		pl.gap = c.Duration("delay")
	}
	if err := client.CheckGap(pl.gap); err != nil {
		return fail(exitUsage, "the default of 15ms suits most networks; the whole sequence must arrive within the daemon's sequence timeout", "bad --delay: %v", err)
	}
	if p.WaitOpen != nil {
		pl.waitOpen = *p.WaitOpen
	}
	if c.IsSet("wait-open") {
		pl.waitOpen = c.Bool("wait-open")
	}
	pl.waitFor = client.DefaultWaitTimeout
	if p.WaitTimeout != nil {
		pl.waitFor = p.WaitTimeout.Duration
	}
	if c.IsSet("wait-timeout") {
		pl.waitFor = c.Duration("wait-timeout")
	}
	if pl.waitFor <= 0 || pl.waitFor > client.MaxWaitTimeout {
		return fail(exitUsage, "", "--wait-timeout %v out of range (0, %v]", pl.waitFor, client.MaxWaitTimeout)
	}
	switch {
	case c.IsSet("then") && !c.Bool("then"):
		pl.then = nil // --then=false: do not run the profile's command
	case len(then) > 0:
		if !c.Bool("then") {
			return fail(exitUsage, "put --then before -- to run a command after knocking", "unexpected command after --: %s", strings.Join(then, " "))
		}
		pl.then = then
	case c.Bool("then"):
		if p.Then == nil {
			return fail(exitUsage, "usage: knockclient knock HOST --then -- COMMAND ARGS...", "--then needs a command after --")
		}
		pl.then = p.Then
	default:
		pl.then = p.Then
	}
	pl.verbose = c.Bool("verbose")
	pl.quiet = c.Bool("quiet")
	return nil
}

// runThen runs the command with knockclient's standard streams and
// returns its exit status.
func runThen(e env, argv []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		code := exitNotFound
		if errors.Is(err, fs.ErrPermission) {
			code = exitCannotRun
		}
		return fail(code, "", "cannot run %s: %v", argv[0], err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return exitStatus(exitCodeOf(ee.ProcessState))
		}
		return fail(exitCannotRun, "", "cannot run %s: %v", argv[0], err)
	}
	return nil
}

// exitCodeOf maps a finished process to a shell-style exit status.
func exitCodeOf(ps *os.ProcessState) int {
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return signalExitCode(ps)
}
