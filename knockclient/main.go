// Command knockclient sends encrypted knock sequences to a knockdaemon
// (docs/PROTOCOL.md) from an ordinary, unprivileged user account, prints
// sequences for other knock tools, and generates key files.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args, newEnv())
	stop()
	os.Exit(code)
}
