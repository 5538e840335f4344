package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestWaitOpen(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := l.Addr().(*net.TCPAddr).AddrPort()
	t.Run("open port answers", func(t *testing.T) {
		took, err := WaitOpen(context.Background(), open, 2*time.Second)
		if err != nil || took <= 0 || took > 2*time.Second {
			t.Fatalf("WaitOpen = %v, %v", took, err)
		}
	})
	l.Close() // now the port refuses
	t.Run("closed port times out refused", func(t *testing.T) {
		start := time.Now()
		_, err := WaitOpen(context.Background(), open, 700*time.Millisecond)
		var ne *NotOpenError
		if !errors.As(err, &ne) {
			t.Fatalf("WaitOpen = %v, want *NotOpenError", err)
		}
		if !ne.Refused || ne.Attempts < 2 || ne.Attempts > 10 {
			t.Fatalf("NotOpenError %+v: want refused, paced attempts", ne)
		}
		if el := time.Since(start); el < 700*time.Millisecond || el > 3*time.Second {
			t.Fatalf("took %v for a 700ms timeout", el)
		}
	})
	t.Run("port that opens later", func(t *testing.T) {
		var l2 net.Listener
		var lerr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(300 * time.Millisecond)
			l2, lerr = net.Listen("tcp4", open.String())
		}()
		took, err := WaitOpen(context.Background(), open, 3*time.Second)
		<-done
		if lerr != nil {
			t.Fatalf("could not listen on %v again: %v", open, lerr)
		}
		defer l2.Close()
		if err != nil || took < 250*time.Millisecond {
			t.Fatalf("WaitOpen = %v, %v; want success after the listener appeared", took, err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := WaitOpen(ctx, netip.MustParseAddrPort("127.0.0.1:9"), time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitOpen with canceled ctx = %v", err)
		}
	})
}
