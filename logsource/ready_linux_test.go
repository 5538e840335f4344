package logsource

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// TestKmsgReady: a record written once, right after Ready, is delivered.
func TestKmsgReady(t *testing.T) {
	netnstest.Require(t)
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		netnstest.Unavailable(t, "no /dev/kmsg: %v", err)
	}
	var none atomic.Int64
	k, lines := kmsgRun(t, KmsgOptions{}, "", &none)
	waitReady(t, k)
	marker := "knocktest-ready-" + netnstest.RandHex(6)
	writeKmsg(t, "<4>"+marker+"\n")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l := <-lines:
			if len(l) >= len(marker) && l[len(l)-len(marker):] == marker {
				return
			}
		case <-deadline:
			t.Fatal("the record written after Ready did not arrive")
		}
	}
}
