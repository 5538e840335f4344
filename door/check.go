package door

import (
	"errors"
	"fmt"
	"os"
)

// Check looks at what a door needs outside the configuration file, for
// `knockdaemon check`: the one-time sequences file is readable and valid,
// and every command exists and is executable. Warnings are things that
// work but should be fixed (a one-time file others can read, a one-time
// file with no sequence left).
func (d *Door) Check() (warnings []string, err error) {
	var errs []error
	if d.OneTime != "" {
		ot, err := OpenOneTime(d.OneTime)
		if err != nil {
			errs = append(errs, fmt.Errorf("door %q: %w", d.Name, err))
		} else {
			if ot.Remaining() == 0 {
				warnings = append(warnings, fmt.Sprintf("door %q: %s has no unused sequence: the door stays closed", d.Name, d.OneTime))
			}
			if st, err := os.Stat(ot.Path()); err == nil && st.Mode().Perm()&0o077 != 0 {
				warnings = append(warnings, fmt.Sprintf("door %q: %s is readable by others (mode %v): it holds the door's secrets; chmod 600 it", d.Name, d.OneTime, st.Mode().Perm()))
			}
		}
	}
	a := d.Action
	for _, c := range []struct {
		key  string
		argv []string
	}{{"start_command", a.Start}, {"stop_command", a.Stop}, {"start_command_6", a.Start6}, {"stop_command_6", a.Stop6}} {
		if len(c.argv) == 0 {
			continue
		}
		st, err := os.Stat(c.argv[0])
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("door %q: %s: %w", d.Name, c.key, err))
		case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("door %q: %s: %s is not an executable file", d.Name, c.key, c.argv[0]))
		}
	}
	return warnings, errors.Join(errs...)
}
