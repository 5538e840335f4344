package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/logsource"
)

// OpenSource makes the log source [source] describes, resuming at
// resume (the state file's position) with the default age limit; see
// OpenSourceOpts.
func OpenSource(c config.Source, resume logsource.Position, log *slog.Logger, stdin io.Reader) (logsource.Source, error) {
	return OpenSourceOpts(c, resume, SourceOptions{Logger: log, Stdin: stdin})
}

// SourceOptions tune OpenSourceOpts.
type SourceOptions struct {
	Logger *slog.Logger
	Stdin  io.Reader // read for type "stdin"
	// MaxAge bounds what a kmsg or journald source delivers when it
	// resumes: older lines are skipped. 0 means
	// logsource.DefaultResumeMaxAge; ResumeMaxAge derives it from [knock].
	MaxAge time.Duration
	// Prime is how far before the saved position a kmsg or journald
	// source delivers the lines handled before the restart again, so
	// that the daemon rebuilds the partial knock sequences (see
	// Daemon.prime). 0 means DefaultPrime; negative, none. ResumePrime
	// derives it from [knock].
	Prime time.Duration
}

// DefaultPrime is the default sequence_timeout: a knock's hits are live
// that long.
const DefaultPrime = 10 * time.Second

// ResumePrime is how far before the saved position a restarted daemon
// looks for the first hits of a knock that straddles the restart: its
// hits are live for sequence_timeout.
func ResumePrime(k config.Knock) time.Duration {
	return k.SequenceTimeout.Duration
}

// ResumeMaxAge is how old a knock read after a restart may be: a timed
// knock is valid for max_skew after it was sent, and its eight hits
// spread over at most sequence_timeout.
func ResumeMaxAge(k config.Knock) time.Duration {
	return k.MaxSkew.Duration + k.SequenceTimeout.Duration
}

// OpenSourceOpts makes the log source [source] describes. Each source
// resumes at resume when resume is its own kind of position, so a restart
// neither loses nor repeats a line: a file at its saved offset, /dev/kmsg
// after its saved record of the same boot, journald after its saved time
// stamp; lines older than opts.MaxAge are not read again (kmsg, journald).
// Otherwise a source starts at the newest record.
func OpenSourceOpts(c config.Source, resume logsource.Position, opts SourceOptions) (logsource.Source, error) {
	log := opts.Logger
	prime := opts.Prime
	if prime == 0 {
		prime = DefaultPrime
	}
	prime = max(prime, 0)
	fileResume := func(path string) logsource.Position {
		if resume.Path != "" && resume.Path == path {
			return resume
		}
		return logsource.Position{}
	}
	kmsgOpts := func(path string) logsource.KmsgOptions {
		ko := logsource.KmsgOptions{Path: path, Logger: log, MaxAge: opts.MaxAge, Prime: prime}
		if resume.Boot != "" && resume.Path == "" {
			ko.Resume = resume
		}
		return ko
	}
	journaldOpts := func(cmd string) logsource.JournaldOptions {
		jo := logsource.JournaldOptions{Command: cmd, Logger: log, MaxAge: opts.MaxAge, Prime: prime}
		if resume.Stamp != 0 && resume.Boot == "" && resume.Path == "" {
			jo.Resume = resume
		}
		return jo
	}
	switch c.Type {
	case "stdin":
		return logsource.NewReader(opts.Stdin, "stdin"), nil
	case "file":
		if err := CheckReadable(c.Path); err != nil {
			return nil, err
		}
		return logsource.NewFile(c.Path, logsource.FileOptions{Resume: fileResume(c.Path), Logger: log}), nil
	case "kmsg":
		if err := CheckReadable(logsource.DefaultKmsgPath); err != nil {
			return nil, err
		}
		return logsource.NewKmsg(kmsgOpts(logsource.DefaultKmsgPath)), nil
	case "journald":
		path, err := exec.LookPath("journalctl")
		if err != nil {
			return nil, fmt.Errorf("source journald: %w", err)
		}
		return logsource.NewJournald(journaldOpts(path)), nil
	case "auto", "":
		fo := logsource.FileOptions{Logger: log}
		ao := logsource.AutoOptions{File: fo, Logger: log}
		if c.Path != "" {
			ao.Files = append([]string{c.Path}, logsource.DefaultLogFiles...)
		}
		src, choice, err := logsource.Auto(ao)
		if err != nil {
			return nil, err
		}
		// Auto's choice is built again with the saved position.
		switch choice.Kind {
		case "file":
			if r := fileResume(choice.Path); r != (logsource.Position{}) {
				src = logsource.NewFile(choice.Path, logsource.FileOptions{Resume: r, Logger: log})
			}
		case "kmsg":
			src = logsource.NewKmsg(kmsgOpts(choice.Path))
		case "journald":
			src = logsource.NewJournald(journaldOpts(choice.Path))
		}
		if log != nil {
			log.Info("log source chosen", "kind", choice.Kind, "path", choice.Path, "why", choice.Reason)
		}
		return src, nil
	}
	return nil, fmt.Errorf("source type %q: want auto, kmsg, file, journald or stdin", c.Type)
}

// CheckReadable opens path for reading and closes it again.
func CheckReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// CheckStateDir reports whether the state file can be written: its
// directory exists and takes a new file, or does not exist yet (the daemon
// creates it).
func CheckStateDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".knockdaemon-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
