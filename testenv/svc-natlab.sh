#!/usr/bin/env bash
# svc-natlab.sh up|down DIR — tools for the namespace NAT lab test in
# core/transport (TestNATLab): iproute2, iptables (nf_tables backend) and
# conntrack, installed idempotently with apt-get. The test itself creates and
# deletes its own namespaces (unique prefix, documentation addresses, no route
# out); nothing runs here between tests. Needs root, as the test does.
set -euo pipefail
cmd=${1:-}; DIR=${2:-/tmp/remora-testenv}
case $cmd in
  up)
    if [ "$(id -u)" != 0 ]; then
      echo "svc-natlab: not root: the NAT lab test will be skipped (or fail under REMORA_REQUIRE_SERVERS=1)" >&2
      exit 0
    fi
    need=()
    command -v ip >/dev/null || need+=(iproute2)
    command -v iptables >/dev/null || need+=(iptables)
    command -v conntrack >/dev/null || need+=(conntrack)
    if [ ${#need[@]} -gt 0 ]; then
      echo "svc-natlab: installing ${need[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    mkdir -p "$DIR"
    echo "REMORA_NATLAB=1" >> "$DIR/env"
    ;;
  down)
    # Namespaces a crashed test run left behind (prefix rl or nat + 4 hex digits).
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(rl[0-9a-f]{4}-(inet|rta|rtb|a|b|pub|lan|m1|m2|stranger)|nat[0-9a-f]{4}-(i|r|a|b|ra|rb|ca|cb))$' || true); do
      ip netns del "$ns" 2>/dev/null || true
    done
    ;;
  *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
