#!/usr/bin/env bash
# bench/run.sh: every performance figure of issue 8 in one table.
#
#   bench/run.sh            # about 3 minutes (4-5 on a loaded machine);
#                           # peer rows say "skipped"
#   bench/run.sh --peers    # also installs knockd, fwknop and fail2ban from
#                           # Debian (apt-get) and measures them as baselines
#
# It builds knockdaemon, knockclient and the generator, writes the
# 1,000,000-line kern.log mix (bench/genlog, seed 1), then runs, one
# package at a time (-p 1, so no two measurements overlap):
#   - bench/: parse vs grep/mawk/fail2ban-regex on the mix; knock -> rule
#     latency in network namespaces (50 knocks per case); the daemon's
#     idle RSS and a 1M-hit flood (root; without root these skip);
#   - the packages' own Go benchmarks with allocation counts: cipher
#     (decode 100 keys x 5 windows), knock (assembler), logparse, parsecmd;
# and prints the table (bench/table). Raw outputs stay in $KNOCK_BENCH_OUT
# (default: a fresh directory under /tmp, printed at the end).
#
# Everything it starts (namespaces, daemons, rsyslogd, knockd) is removed
# by the benchmarks' own cleanup; on Ctrl-C the trap kills the running go
# test's process group, whose children die with it (PDEATHSIG).
set -euo pipefail

peers=0
for a in "$@"; do
	case $a in
	--peers) peers=1 ;;
	-h | --help)
		sed -n '2,20p' "$0"
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $a (want --peers)" >&2
		exit 2
		;;
	esac
done

cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${KNOCK_BENCH_OUT:-$(mktemp -d /tmp/knock-bench.XXXXXX)}
mkdir -p "$out/bin"
child=
cleanup() {
	if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
		kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	rm -f "$out/kern.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "run.sh: $*" >&2; }

# run LOG CMD...: run a command in its own process group (so the trap can
# stop it and its children), output to LOG and to stderr.
run() {
	local log=$1
	shift
	set -m
	"$@" >"$log" 2>&1 &
	child=$!
	set +m
	local rc=0
	wait "$child" || rc=$?
	child=
	cat "$log" >&2
	return $rc
}

if ((peers)); then
	missing=()
	command -v knockd >/dev/null || missing+=(knockd)
	command -v fail2ban-regex >/dev/null || missing+=(fail2ban)
	command -v fwknopd >/dev/null || missing+=(fwknop-server)
	command -v fwknop >/dev/null || missing+=(fwknop-client)
	if ((${#missing[@]})); then
		if [[ $(id -u) != 0 ]]; then
			say "--peers needs root to install ${missing[*]}"
			exit 1
		fi
		say "installing ${missing[*]} from Debian"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$out/apt.log" 2>&1 ||
			{ say "apt-get failed, see $out/apt.log"; exit 1; }
	fi
fi
if [[ $(id -u) != 0 ]]; then
	say "not root: the namespace benchmarks (latency, memory) will be skipped"
fi

say "building"
$GO build -trimpath -o "$out/bin/knockdaemon" ./knockdaemon
$GO build -trimpath -o "$out/bin/knockclient" ./knockclient
$GO build -trimpath -o "$out/bin/genlog" ./bench/genlog
$GO build -trimpath -o "$out/bin/table" ./bench/table

say "writing the 1,000,000-line mix (seed 1)"
"$out/bin/genlog" -lines 1000000 -seed 1 -o "$out/kern.log"

export KNOCK_BENCH_BIN=$out/bin KNOCK_BENCH_MIX=$out/kern.log KNOCK_BENCH_PEERS=$peers
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)

say "bench/: parse, latency, memory"
rc=0
run "$out/bench.txt" $GO test -p 1 -count=1 -run '^$' -bench '^(BenchmarkParse1M|BenchmarkLatency|BenchmarkDaemonMemory)$' \
	-benchtime 1x -timeout 15m ./bench || rc=1
say "bench/: the pieces of the open path (state write, firewall command)"
run "$out/openpath.txt" $GO test -p 1 -count=1 -run '^$' -bench '^BenchmarkOpenPath$' -benchtime 200x -timeout 5m ./bench || rc=1

say "package benchmarks (cipher, knock, logparse, parsecmd)"
run "$out/pkg.txt" $GO test -p 1 -count=1 -run '^$' -benchmem -benchtime 0.5s -timeout 10m \
	-bench '^(BenchmarkDecode|BenchmarkAddHot|BenchmarkFlood|BenchmarkParseMix|BenchmarkParse|BenchmarkRunVsGrep)$' \
	./cipher ./knock ./logparse ./internal/parsecmd || rc=1

echo
echo "knockdaemon issue-8 figures, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r), load average at start $load,"
echo "$(($(date +%s) - start)) s. Ratio = ours / baseline: higher is better for lines/s and hits/s, lower for ms, MB and ns."
echo
peerflag=
((peers)) && peerflag=-peers
cat "$out/bench.txt" "$out/openpath.txt" "$out/pkg.txt" | "$out/bin/table" $peerflag
echo
echo "raw go test output: $out/bench.txt $out/openpath.txt $out/pkg.txt"
exit $rc
