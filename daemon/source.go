package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/logsource"
)

// OpenSource makes the log source [source] describes. A file source
// resumes at resume when it is set (the state file's position), so a
// restart neither loses nor repeats a line; the other sources start at
// the newest record. stdin is read for type "stdin".
func OpenSource(c config.Source, resume logsource.Position, log *slog.Logger, stdin io.Reader) (logsource.Source, error) {
	switch c.Type {
	case "stdin":
		return logsource.NewReader(stdin, "stdin"), nil
	case "file":
		if err := CheckReadable(c.Path); err != nil {
			return nil, err
		}
		if resume.Path != "" && resume.Path != c.Path {
			resume = logsource.Position{}
		}
		return logsource.NewFile(c.Path, logsource.FileOptions{Resume: resume, Logger: log}), nil
	case "kmsg":
		if err := CheckReadable(logsource.DefaultKmsgPath); err != nil {
			return nil, err
		}
		return logsource.NewKmsg(logsource.KmsgOptions{Logger: log}), nil
	case "journald":
		path, err := exec.LookPath("journalctl")
		if err != nil {
			return nil, fmt.Errorf("source journald: %w", err)
		}
		return logsource.NewJournald(logsource.JournaldOptions{Command: path, Logger: log}), nil
	case "auto", "":
		fo := logsource.FileOptions{Logger: log}
		opts := logsource.AutoOptions{File: fo, Logger: log}
		if c.Path != "" {
			opts.Files = append([]string{c.Path}, logsource.DefaultLogFiles...)
		}
		src, choice, err := logsource.Auto(opts)
		if err != nil {
			return nil, err
		}
		if choice.Kind == "file" && resume.Path == choice.Path {
			// Auto picked a file: build it again with the saved position.
			src = logsource.NewFile(choice.Path, logsource.FileOptions{Resume: resume, Logger: log})
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
