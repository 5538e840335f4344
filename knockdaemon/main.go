// Command knockdaemon follows the firewall's log, decrypts knock sequences
// (docs/PROTOCOL.md) and opens the firewall for the users whose keys and
// policies allow it. See docs/ARCHITECTURE.md and docs/CONFIG.md.
package main

import "os"

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
