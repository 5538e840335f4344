package netnstest

import (
	"net"
	"testing"
	"time"
)

func TestPairConnects(t *testing.T) {
	n := New(t)
	c := n.Client
	l := Listen(t, n.Server, "tcp", net.JoinHostPort(c.ServerIP4.String(), "2222"))
	_ = l
	if err := Dial(c.NS, "tcp", net.JoinHostPort(c.ServerIP4.String(), "2222"), 3*time.Second); err != nil {
		t.Fatalf("dial over the veth link: %v", err)
	}
	l6 := Listen(t, n.Server, "tcp6", net.JoinHostPort(c.ServerIP6.String(), "2223"))
	_ = l6
	if err := Dial(c.NS, "tcp6", net.JoinHostPort(c.ServerIP6.String(), "2223"), 3*time.Second); err != nil {
		t.Fatalf("dial over IPv6: %v", err)
	}
	// A port nobody listens on is refused, so the helper can tell open
	// from closed.
	if err := Dial(c.NS, "tcp", net.JoinHostPort(c.ServerIP4.String(), "2224"), time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	// A second client gets its own link and subnet.
	c2 := n.AddClient(t)
	l2 := Listen(t, n.Server, "tcp", net.JoinHostPort(c2.ServerIP4.String(), "2225"))
	_ = l2
	if err := Dial(c2.NS, "tcp", net.JoinHostPort(c2.ServerIP4.String(), "2225"), 3*time.Second); err != nil {
		t.Fatalf("second client: %v", err)
	}
	if c2.IP4 == c.IP4 {
		t.Fatalf("clients share address %v", c.IP4)
	}
}
