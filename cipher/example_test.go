package cipher_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

// The client side: encode a request into the eight knock ports
// (docs/PROTOCOL.md, vector 1).
func ExampleEncode() {
	secret, err := cipher.ParseKey([]byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	k := cipher.Key{Name: "alice", Secret: secret, Mode: cipher.Timed}
	ports, err := cipher.Encode(k, cipher.Request{Port: 22, Time: 10}, time.Unix(1767225600, 0), cipher.DefaultBase)
	fmt.Println(ports, err)
	// Output: [763 827 804 961 893 936 880 968] <nil>
}

// The daemon side: turn eight knock ports back into a request, trying
// every key and window within the skew; the callback applies the policy.
func ExampleDecoder_Decode() {
	secret, _ := cipher.ParseKey([]byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="))
	keys := []cipher.Key{{Name: "alice", Secret: secret}}
	d := cipher.NewDecoder(keys, cipher.DefaultMaxSkew)

	now := time.Unix(1767225600+20, 0) // the daemon's clock, 20 s later
	block, _ := cipher.BlockFromPorts([8]uint16{763, 827, 804, 961, 893, 936, 880, 968}, cipher.DefaultBase)
	src := netip.MustParseAddr("198.51.100.7")
	res := d.Decode(block, now, func(m cipher.Match) bool {
		if !m.Request.AllowsSource() && m.Request.Allow != src {
			return false // delegation: not allowed by this example's policy
		}
		fmt.Println(m.Name, m.Request, "replay until", m.ReplayUntil(cipher.DefaultMaxSkew, 24*time.Hour).UTC().Format(time.TimeOnly))
		return true
	})
	fmt.Println("accepted:", res.Accepted)
	// Output:
	// alice allow=source port=22 time=10m replay until 00:01:00
	// accepted: true
}
