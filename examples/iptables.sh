#!/bin/sh
# examples/iptables.sh: the firewall a knockdaemon server needs with the
# iptables or ipset backend (iptables and ip6tables, nft or legacy flavour).
#
#   sudo sh examples/iptables.sh            # apply
#   PROTECTED=22,443 sudo sh examples/iptables.sh
#
# What it sets up, in INPUT, for IPv4 and IPv6:
#   1. packets of established connections are accepted first, so a session
#      opened during a grant survives the grant's close;
#   2. every TCP SYN (and, with UDP=1, every UDP datagram) to a knock port
#      745-1000 is logged with the prefix "knock: " and dropped: the log line
#      IS the knock, knockdaemon reads it from the kernel log;
#   3. new connections to the protected ports are dropped; knockdaemon inserts
#      its own chain (KNOCKDAEMON, iptables backend) or set-match rule (ipset
#      backend) at the top of INPUT to let a knocker in.
#
# It appends to INPUT and never flushes: run it once on a host whose other
# rules you keep elsewhere (iptables-save > /etc/iptables/rules.v4 with
# netfilter-persistent, for example). Do not rate-limit the LOG rule below a
# few knocks per second per source, or knocks are lost (see README,
# troubleshooting).
set -eu

PROTECTED=${PROTECTED:-22}   # comma-separated ports to hide, at most 15
KNOCK_PORTS=${KNOCK_PORTS:-745:1000}
PREFIX=${PREFIX:-knock: }
UDP=${UDP:-0}                # 1: also log UDP knocks ([knock] udp = true)

for ipt in iptables ip6tables; do
	if ! command -v "$ipt" >/dev/null 2>&1; then
		echo "iptables.sh: $ipt not found" >&2
		exit 1
	fi
	$ipt -w -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	$ipt -w -A INPUT -p tcp --syn --dport "$KNOCK_PORTS" -j LOG --log-prefix "$PREFIX" --log-level info
	$ipt -w -A INPUT -p tcp --dport "$KNOCK_PORTS" -j DROP
	if [ "$UDP" = 1 ]; then
		$ipt -w -A INPUT -p udp --dport "$KNOCK_PORTS" -j LOG --log-prefix "$PREFIX" --log-level info
		$ipt -w -A INPUT -p udp --dport "$KNOCK_PORTS" -j DROP
	fi
	$ipt -w -A INPUT -p tcp -m multiport --dports "$PROTECTED" -j DROP
done
echo "iptables.sh: knock ports $KNOCK_PORTS logged as \"$PREFIX\" and dropped; port(s) $PROTECTED hidden"
