// Command listener is the protected service of the demo and of manual
// tests: it accepts TCP connections on the given addresses and answers each
// with one line, so "the port is open" is something you can see.
//
//	listener [-msg TEXT] ADDR...   e.g. listener :22 or listener 198.18.0.1:2222
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	msg := flag.String("msg", "hello from the protected service", "the line each connection receives")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: listener [-msg TEXT] ADDR...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*msg, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		os.Exit(1)
	}
}

func run(msg string, addrs []string) error {
	var ls []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return err
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		go serve(l, msg)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, l := range ls {
		l.Close()
	}
	return nil
}

func serve(l net.Listener, msg string) {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors and the like: wait, then go on.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = fmt.Fprintln(c, msg)
		}()
	}
}
