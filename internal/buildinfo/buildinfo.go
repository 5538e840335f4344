// Package buildinfo gives both programs the same --version text, taken
// from the build information the Go toolchain embeds (module version, VCS
// revision, whether the tree was modified, Go version).
package buildinfo

import "runtime/debug"

// Version returns for example "v1.2.0 (0123456789ab) go1.26.8", or
// "(devel) (0123456789ab+dirty) go1.26.8" for a build from a modified
// checkout, or "unknown" when the binary carries no build information.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return format(bi)
}

func format(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " (" + rev[:min(len(rev), 12)] + dirty + ")"
	}
	return v + " " + bi.GoVersion
}
