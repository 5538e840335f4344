package logsource

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// AutoOptions tune Auto. Zero values choose the defaults.
type AutoOptions struct {
	KmsgPath   string      // default DefaultKmsgPath
	Files      []string    // default DefaultLogFiles
	Journalctl string      // default "journalctl"
	File       FileOptions // for a file choice (Resume, PollInterval, ...)
	Now        func() time.Time
	Logger     *slog.Logger
}

// Choice says which source Auto picked and why; the daemon logs it.
type Choice struct {
	Kind   string // "kmsg", "file" or "journald"
	Path   string // the device, the file, or the journalctl binary
	Reason string
}

// Auto picks the log source: /dev/kmsg when it can be read (kernel
// records only, unforgeable by local users), else the first of the log
// files that exists and can be read, else journalctl. It fails, naming
// every reason, when none is usable.
func Auto(opts AutoOptions) (Source, Choice, error) {
	kpath := opts.KmsgPath
	if kpath == "" {
		kpath = DefaultKmsgPath
	}
	files := opts.Files
	if files == nil {
		files = DefaultLogFiles
	}
	jcmd := opts.Journalctl
	if jcmd == "" {
		jcmd = "journalctl"
	}
	var why []string
	err := kmsgUsable(kpath)
	if err == nil {
		c := Choice{Kind: "kmsg", Path: kpath, Reason: kpath + " is readable (kernel records, cannot be forged by local users)"}
		return NewKmsg(KmsgOptions{Path: kpath, Now: opts.Now, Logger: opts.Logger}), c, nil
	}
	why = append(why, err.Error())
	for _, f := range files {
		err := readableFile(f)
		if err == nil {
			c := Choice{Kind: "file", Path: f, Reason: strings.Join(append(why, f+" exists"), "; ")}
			fo := opts.File
			if fo.Now == nil {
				fo.Now = opts.Now
			}
			if fo.Logger == nil {
				fo.Logger = opts.Logger
			}
			return NewFile(f, fo), c, nil
		}
		why = append(why, err.Error())
	}
	path, err := exec.LookPath(jcmd)
	if err == nil {
		c := Choice{Kind: "journald", Path: path, Reason: strings.Join(append(why, "journalctl found at "+path), "; ")}
		return NewJournald(JournaldOptions{Command: path, Now: opts.Now, Logger: opts.Logger}), c, nil
	}
	why = append(why, err.Error())
	return nil, Choice{}, fmt.Errorf("logsource: no usable log source: %s (hint: run as root for /dev/kmsg, or set [source] type and path)", strings.Join(why, "; "))
}

func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}
