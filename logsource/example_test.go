package logsource_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/knockdaemon/knock/logsource"
)

// A source calls emit once per complete line; Text is only valid during
// the call, and every source reports its counters.
func ExampleNewReader() {
	in := "Nov 21 05:20:44 gw kernel: knock: IN=eth0 SRC=198.18.0.2 DPT=800 SYN\n" +
		strings.Repeat("x", logsource.DefaultMaxLine+1) + "\n" +
		"Nov 21 05:20:45 gw kernel: knock: IN=eth0 SRC=198.18.0.2 DPT=801 SYN\n"
	src := logsource.NewReader(strings.NewReader(in), "stdin")
	err := src.Run(context.Background(), func(l logsource.Line) {
		fmt.Println(string(l.Text[len(l.Text)-26:]))
	})
	st := src.Stats()
	fmt.Println(err, st.Lines, st.Overlong)
	// Output:
	// SRC=198.18.0.2 DPT=800 SYN
	// SRC=198.18.0.2 DPT=801 SYN
	// <nil> 2 1
}
