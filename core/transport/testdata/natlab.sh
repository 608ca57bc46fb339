#!/usr/bin/env bash
# natlab.sh — self-contained NAT lab in Linux network namespaces (no traffic ever leaves the namespaces).
#
#   natlab.sh up [eim|sym] [eim|sym]   build lab; NAT type of router A and router B (default eim eim)
#   natlab.sh nat A|B eim|sym          re-configure one router's NAT and flush its conntrack table
#   natlab.sh flush                    flush conntrack (NAT mappings) on both routers
#   natlab.sh status                   show addresses, NAT rules, conntrack entries
#   natlab.sh down                     delete all lab namespaces (kill your lab processes first, by pid)
#   natlab.sh run NS cmd...            run a command inside namespace NS (a, b, pub, rta, rtb, inet)
#
# Topology (all addresses are RFC 5737 documentation ranges; no default route anywhere leads out):
#
#   [$P-a] 192.0.2.10 --lan-- [$P-rta] 192.0.2.1 | wan 203.0.113.1 --+
#                                                                       |-- br0 in [$P-inet] ("internet", L2 only)
#   [$P-b] 198.51.100.10 --lan-- [$P-rtb] 198.51.100.1 | wan 203.0.113.2 --+
#                                                                       |
#   [$P-pub] 203.0.113.10 (public host: STUN/TURN, libp2p relay) -----+
#
# NAT types (iptables-nft in the router namespaces):
#   eim : MASQUERADE            -> Linux keeps the source port when free => endpoint-independent mapping
#                                  ("port-preserving"), filtering is address+port dependent (conntrack)
#   sym : MASQUERADE --random-fully -> new random port for every 5-tuple => symmetric NAT
# Both routers behave like a home router: FORWARD wan->lan only for ESTABLISHED/RELATED, INPUT from wan
# dropped unless ESTABLISHED (this also prevents the Linux conntrack "self-entry" clash that otherwise
# makes an unsolicited punch packet to the router steal the port mapping).
set -euo pipefail
P=${NATLAB_PREFIX:?set NATLAB_PREFIX to a unique short prefix}
INET=$P-inet RTA=$P-rta RTB=$P-rtb NSA=$P-a NSB=$P-b PUB=$P-pub
ALL="$INET $RTA $RTB $NSA $NSB $PUB"
x() { ip netns exec "$@"; }

nat() { # nat <router-ns> <eim|sym>
  local ns=$1 type=$2
  x "$ns" sysctl -qw net.ipv4.ip_forward=1
  x "$ns" iptables -t nat -F
  x "$ns" iptables -F
  case $type in
    eim) x "$ns" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE ;;
    sym) x "$ns" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully ;;
    *) echo "unknown NAT type $type" >&2; exit 2 ;;
  esac
  x "$ns" iptables -P FORWARD DROP
  x "$ns" iptables -A FORWARD -i lan -o wan -j ACCEPT
  x "$ns" iptables -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  x "$ns" iptables -A INPUT -i lo -j ACCEPT
  x "$ns" iptables -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  x "$ns" iptables -A INPUT -i wan -j DROP
  x "$ns" conntrack -F >/dev/null 2>&1 || true
}

up() {
  local ta=${1:-eim} tb=${2:-eim}
  for ns in $ALL; do
    ip netns add "$ns"; x "$ns" ip link set lo up
    x "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1  # IPv4-only lab
  done
  # the "internet": a bridge with no address and no uplink
  x "$INET" ip link add br0 type bridge
  x "$INET" ip link set br0 up
  # WAN links: veth created directly inside the namespaces (never exists in the root namespace)
  ip link add wan netns "$RTA" type veth peer name rta netns "$INET"
  ip link add wan netns "$RTB" type veth peer name rtb netns "$INET"
  ip link add eth0 netns "$PUB" type veth peer name pub netns "$INET"
  for p in rta rtb pub; do x "$INET" ip link set "$p" master br0 up; done
  x "$RTA" ip addr add 203.0.113.1/24 dev wan;  x "$RTA" ip link set wan up
  x "$RTB" ip addr add 203.0.113.2/24 dev wan;  x "$RTB" ip link set wan up
  x "$PUB" ip addr add 203.0.113.10/24 dev eth0; x "$PUB" ip link set eth0 up
  # LAN links
  ip link add lan netns "$RTA" type veth peer name eth0 netns "$NSA"
  ip link add lan netns "$RTB" type veth peer name eth0 netns "$NSB"
  x "$RTA" ip addr add 192.0.2.1/24 dev lan;     x "$RTA" ip link set lan up
  x "$RTB" ip addr add 198.51.100.1/24 dev lan;  x "$RTB" ip link set lan up
  x "$NSA" ip addr add 192.0.2.10/24 dev eth0;   x "$NSA" ip link set eth0 up
  x "$NSB" ip addr add 198.51.100.10/24 dev eth0; x "$NSB" ip link set eth0 up
  # clients route everything to their router; routers/pub have no default route at all
  x "$NSA" ip route add default via 192.0.2.1
  x "$NSB" ip route add default via 198.51.100.1
  nat "$RTA" "$ta"
  nat "$RTB" "$tb"
  echo "natlab up: A=$ta B=$tb"
}

down() { for ns in $ALL; do ip netns del "$ns" 2>/dev/null || true; done; echo "natlab down"; }

status() {
  for ns in $ALL; do echo "== $ns"; x "$ns" ip -br addr | grep -v '^lo'; done
  for ns in $RTA $RTB; do echo "== $ns nat"; x "$ns" iptables -t nat -S POSTROUTING | tail -n +2
    echo "== $ns conntrack"; x "$ns" conntrack -L 2>/dev/null || true; done
}

cmd=${1:-}; shift || true
case $cmd in
  up) up "$@" ;;
  down) down ;;
  nat) r=$1; [ "$r" = A ] && nat "$RTA" "$2" || nat "$RTB" "$2" ;;
  flush) for ns in $RTA $RTB; do x "$ns" conntrack -F >/dev/null 2>&1 || true; done ;;
  status) status ;;
  run) ns=$1; shift; x "$P-$ns" "$@" ;;
  *) sed -n 2,10p "$0"; exit 2 ;;
esac
