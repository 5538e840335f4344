#!/usr/bin/env bash
# demo.sh: knockdaemon in a few seconds, on this machine, for real.
#
#   sudo ./demo.sh        (or: sudo make demo)
#
# On a Debian or Ubuntu machine, as root, it installs what is missing,
# builds knockdaemon and knockclient, and creates two network namespaces
# joined by a veth pair: "server" (198.18.254.1) with a hidden service on
# port 22 behind iptables, and "client" (198.18.254.2). knockdaemon runs on
# this host, reads the kernel log (/dev/kmsg) and changes the firewall
# inside the server namespace. Then it shows, step by step: the port is
# closed; an unprivileged user knocks; the port answers; status shows the
# grant; a knock with --time 255 closes it; it is closed again.
# Everything it made is removed at the end, also on failure or Ctrl-C.
# It exits non-zero if any step does not behave.
set -euo pipefail

cd "$(dirname "$0")"
started=$(date +%s%N)

if [[ -t 1 ]]; then
	B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' D=$'\e[2m' N=$'\e[0m'
else
	B= G= R= Y= D= N=
fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
ok() { printf '    %s✔ %s%s\n' "$G" "$*" "$N"; }
info() { printf '    %s%s%s\n' "$D" "$*" "$N"; }
show() { printf '    %s$ %s%s\n' "$Y" "$*" "$N"; }
# indent CMD...: runs CMD, shows its output indented, returns its status.
indent() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [[ -n $out ]]; then printf '%s\n' "$out" | sed 's/^/    /'; fi
	return "$rc"
}
die() {
	printf '    %s✘ %s%s\n' "$R" "$*" "$N" >&2
	exit 1
}

[[ $(id -u) -eq 0 ]] || die "run me as root: sudo ./demo.sh (network namespaces and iptables need it)"

# --- tools -------------------------------------------------------------------
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || die "Go is not installed: see https://go.dev/doc/install (Go 1.26 or newer)"
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v runuser >/dev/null || need+=(util-linux)
command -v nmap >/dev/null || need+=(nmap)
if ((${#need[@]})); then
	command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
	step "Installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the world ---------------------------------------------------------------
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
SRV=kdemo${id}s
CLI=kdemo${id}c
SRV_IP=198.18.254.1
CLI_IP=198.18.254.2
PREFIX="kdemo${id}: "
work=$(mktemp -d /tmp/knock-demo.XXXXXX)
chmod 0755 "$work"
daemon_pid= listener_pid= old_all_netns=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$daemon_pid" 2>/dev/null || true
	fi
	if [[ -n $listener_pid ]]; then kill "$listener_pid" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	ip netns del "$SRV" 2>/dev/null || true
	ip netns del "$CLI" 2>/dev/null || true
	if [[ -n $old_all_netns ]]; then
		echo "$old_all_netns" >/proc/sys/net/netfilter/nf_log_all_netns 2>/dev/null || true
	fi
	if ((rc != 0)) && [[ -s $work/daemon.log ]]; then
		printf '\n%sknockdaemon log:%s\n' "$B" "$N" >&2
		sed 's/^/    /' "$work/daemon.log" >&2
	fi
	rm -rf "$work"
	if ((rc == 0)); then
		printf '\n%sDemo done in %s s; namespaces and processes removed.%s\n' "$G" \
			"$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$N"
	else
		printf '\n%sDemo FAILED (exit %d); namespaces and processes removed.%s\n' "$R" "$rc" "$N" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Building knockdaemon and knockclient"
for p in knockdaemon knockclient e2e/listener; do
	go build -o "$work/$(basename "$p")" "./$p" || die "go build ./$p failed"
done
chmod 0755 "$work"/*
ok "built into $work"

step "Two network namespaces: server $SRV_IP and client $CLI_IP"
ip netns add "$SRV"
ip netns add "$CLI"
ip link add "kd${id}s" netns "$SRV" type veth peer name "kd${id}c" netns "$CLI"
ip -n "$SRV" addr add "$SRV_IP/30" dev "kd${id}s"
ip -n "$CLI" addr add "$CLI_IP/30" dev "kd${id}c"
for ns in "$SRV" "$CLI"; do ip -n "$ns" link set lo up; done
ip -n "$SRV" link set "kd${id}s" up
ip -n "$CLI" link set "kd${id}c" up
ok "namespaces $SRV and $CLI"

# LOG lines from inside a namespace reach the host's kernel log only with
# nf_log_all_netns (see README, troubleshooting).
modprobe nf_log_syslog 2>/dev/null || true
[[ -w /proc/sys/net/netfilter/nf_log_all_netns ]] || die "no /proc/sys/net/netfilter/nf_log_all_netns: this kernel cannot log from namespaces"
old_all_netns=$(cat /proc/sys/net/netfilter/nf_log_all_netns)
echo 1 >/proc/sys/net/netfilter/nf_log_all_netns

step "Server firewall: examples/iptables.sh (knock ports logged and dropped, port 22 dropped)"
ip netns exec "$SRV" env PREFIX="$PREFIX" PROTECTED=22 sh examples/iptables.sh >/dev/null
indent ip netns exec "$SRV" iptables -S INPUT
ip netns exec "$SRV" "$work/listener" -msg "SSH-2.0-OpenSSH_9.2 (the hidden service answers)" ":22" &
listener_pid=$!

step "Keys: alice makes one as an ordinary user; the server gets a copy"
home="$work/home"
install -d -m 0700 -o nobody "$home"
indent runuser -u nobody -- "$work/knockclient" keygen "$home/alice.key" || die "knockclient keygen failed"
install -m 0600 "$home/alice.key" "$work/alice.key"
ok "32-byte key, mode $(stat -c %a "$home/alice.key"), owned by $(stat -c %U "$home/alice.key")"

cat >"$work/knockdaemon.toml" <<EOF
[daemon]
state_file     = "$work/state.json"
control_socket = "$work/control.sock"
log_format     = "text"

[source]
type   = "kmsg"
prefix = "${PREFIX% }"

[backend]
type  = "iptables"
netns = "$SRV"     # the daemon runs here, the firewall it changes is in the server namespace

[[user]]
name        = "alice"
key_file    = "$work/alice.key"
ports       = ["22"]
max_minutes = 60
EOF

step "Starting knockdaemon (reads /dev/kmsg, no network socket)"
show "knockdaemon -c knockdaemon.toml check"
indent "$work/knockdaemon" -c "$work/knockdaemon.toml" check || die "knockdaemon check failed"
"$work/knockdaemon" -c "$work/knockdaemon.toml" run >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for i in $(seq 100); do
	grep -q 'event=started' "$work/daemon.log" 2>/dev/null && break
	kill -0 "$daemon_pid" 2>/dev/null || die "knockdaemon exited at start"
	((i < 100)) || die "knockdaemon did not start within 10 s"
	sleep 0.1
done
ok "knockdaemon is running (pid $daemon_pid)"

# probe: one connection attempt from the client; prints the service's line.
probe() { ip netns exec "$CLI" timeout "${1:-1}" bash -c "exec 3<>/dev/tcp/$SRV_IP/22 && head -n1 <&3" 2>/dev/null; }
as_alice() { ip netns exec "$CLI" runuser -u nobody -- env HOME="$home" "$work/knockclient" "$@"; }
# events_since MARK EVENT: the daemon's decisions logged after line MARK,
# once EVENT is among them (its log is flushed within a moment).
events_since() {
	local lines=
	for _ in $(seq 40); do
		lines=$(tail -n +"$(($1 + 1))" "$work/daemon.log" | grep -E 'event=(accepted|rejected|opened|extended|closed)' || true)
		grep -q "event=$2" <<<"$lines" && break
		sleep 0.05
	done
	printf '%s\n' "$lines" | sed 's/^/    /'
}

step "1. Port 22 is closed: the client sees nothing there"
show "nmap -Pn -p 22 $SRV_IP"
ip netns exec "$CLI" nmap -Pn -n -p 22 --max-retries 0 --host-timeout 5s "$SRV_IP" 2>/dev/null | grep -E '^22/' | sed 's/^/    /'
if probe 1 >/dev/null; then die "port 22 answered before any knock"; fi
ok "no answer on port 22"

step "2. alice knocks, as an unprivileged user, from the client"
mark=$(wc -l <"$work/daemon.log")
show "knockclient knock $SRV_IP --port 22 --time 1 --key-file ~/alice.key"
t0=$(date +%s%N)
indent as_alice knock "$SRV_IP" --port 22 --time 1 --key-file "$home/alice.key" || die "knockclient failed"
banner=
for _ in $(seq 40); do
	banner=$(probe 0.3) && break
	sleep 0.025
done
[[ -n $banner ]] || die "port 22 did not open after the knock"
ms=$((($(date +%s%N) - t0) / 1000000))
ok "port 22 answers (${ms} ms after the knock began): $banner"
info "knockdaemon's log:"
events_since "$mark" opened

step "3. The grant, as the daemon shows it"
show "knockdaemon status"
indent "$work/knockdaemon" -c "$work/knockdaemon.toml" status || die "knockdaemon status failed"

step "4. alice closes it again with --time 255"
mark=$(wc -l <"$work/daemon.log")
show "knockclient knock $SRV_IP --port 22 --time 255 --key-file ~/alice.key"
indent as_alice knock "$SRV_IP" --port 22 --time 255 --key-file "$home/alice.key" || die "knockclient failed"
closed=
for _ in $(seq 20); do
	if ! probe 0.3 >/dev/null; then closed=1 && break; fi
	sleep 0.1
done
[[ -n $closed ]] || die "port 22 still answers after --time 255"
info "knockdaemon's log:"
events_since "$mark" closed

step "5. Port 22 is closed again"
show "nmap -Pn -p 22 $SRV_IP"
ip netns exec "$CLI" nmap -Pn -n -p 22 --max-retries 0 --host-timeout 5s "$SRV_IP" 2>/dev/null | grep -E '^22/' | sed 's/^/    /'
if probe 1 >/dev/null; then die "port 22 answered after the close"; fi
ok "no answer on port 22"
