// Package bench holds the end-to-end performance benchmarks of issue 8:
// parsing a 1,000,000-line kern.log mix against grep, mawk and
// fail2ban-regex; knock -> rule latency in network namespaces against
// knockd and fwknop; the daemon's memory and throughput under a flood.
//
// Every figure is measured as a ratio against a baseline run in the same
// process and the same minute, never as a timed assertion. bench/run.sh
// runs them all (and the packages' own Go benchmarks) and prints one
// table; see bench/README.md. The benchmarks here need the built binaries
// (run.sh passes them in KNOCK_BENCH_BIN, else they are built) and, for
// the namespace ones, root; without root they skip.
package bench
