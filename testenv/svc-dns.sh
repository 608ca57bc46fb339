#!/usr/bin/env bash
# svc-dns.sh up DIR | down DIR — a real authoritative DNS server (Knot DNS,
# from Debian) for the DNS TXT bootstrap box's tests, on 127.0.0.1 only,
# all state under DIR/dns, stopped by pid.
#
#   knotd  127.0.0.1:15353 (UDP and TCP), zone "circle.test." with dynamic
#          updates (RFC 2136) allowed for the TSIG key remora-test.
#          (hmac-sha256); zone changes are kept in Knot's journal only.
#
# Tests use their own names below the zone (e.g. RANDOM.circle.test.).
# Appends to DIR/env: REMORA_DNS_SERVER, REMORA_DNS_ZONE, REMORA_DNS_TSIG_NAME,
# REMORA_DNS_TSIG_ALGORITHM, REMORA_DNS_TSIG_SECRET_FILE (base64 secret, 0600).
# Cold install (apt-get install knot): about 15 s on the 2-core machine.
set -euo pipefail

cmd=${1:?usage: svc-dns.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
PORT=${REMORA_DNS_PORT:-15353}
ZONE=circle.test

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
W=$DIR/dns

alive() { [ -s "$W/knotd.pid" ] && kill -0 "$(cat "$W/knotd.pid")" 2>/dev/null; }

stop() {
  [ -s "$W/knotd.pid" ] || return 0
  local pid
  pid=$(cat "$W/knotd.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then echo "svc-dns: $pid still alive, SIGKILL" >&2; kill -KILL "$pid"; fi
  rm -f "$W/knotd.pid"
}

install_pkgs() {
  [ -x /usr/sbin/knotd ] && command -v kdig >/dev/null && return 0
  echo "svc-dns: installing knot, knot-dnsutils (~15 s)" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then # never let the packages start system daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends knot knot-dnsutils >/dev/null
}

up() {
  install_pkgs
  # The daemons must not inherit our caller's descriptors: a `flock
  # /work/testenv.lock` around this script would stay locked while they run.
  local fd
  for fd in $(ls /proc/$$/fd); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
  mkdir -p "$W/zones" "$W/db"
  if [ ! -s "$W/tsig.secret" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 > "$W/tsig.secret")
  fi
  if ! alive; then
    cat > "$W/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$PORT
    rundir: "$W"
log:
  - target: stderr
    any: info
database:
    storage: "$W/db"
control:
    listen: "$W/knot.sock"
key:
  - id: remora-test.
    algorithm: hmac-sha256
    secret: $(cat "$W/tsig.secret")
acl:
  - id: update
    key: remora-test.
    action: update
template:
  - id: default
    storage: "$W/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
zone:
  - domain: $ZONE.
    acl: update
CONF
    cat > "$W/zones/$ZONE.zone" <<ZONEFILE
\$ORIGIN $ZONE.
\$TTL 60
@   SOA ns.$ZONE. hostmaster.$ZONE. 1 3600 600 86400 30
@   NS  ns
ns  A   127.0.0.1
ZONEFILE
    rm -rf "$W/db"/*  # a fresh zone at every start
    nohup /usr/sbin/knotd -c "$W/knot.conf" </dev/null >"$W/knotd.log" 2>&1 &
    echo $! > "$W/knotd.pid"
    for _ in $(seq 200); do
      if ! kill -0 "$(cat "$W/knotd.pid")" 2>/dev/null; then
        echo "svc-dns: knotd exited (port $PORT taken?); log:" >&2; tail -20 "$W/knotd.log" >&2; rm -f "$W/knotd.pid"; exit 1
      fi
      kdig -p "$PORT" @127.0.0.1 +short +time=1 +retry=0 SOA "$ZONE." 2>/dev/null | grep -q hostmaster && break
      sleep 0.05
    done
    kdig -p "$PORT" @127.0.0.1 +short +time=1 +retry=0 SOA "$ZONE." | grep -q hostmaster || {
      echo "svc-dns: knotd does not answer for $ZONE; log:" >&2; tail -20 "$W/knotd.log" >&2; exit 1; }
  fi
  {
    echo "REMORA_DNS_SERVER=127.0.0.1:$PORT"
    echo "REMORA_DNS_ZONE=$ZONE."
    echo "REMORA_DNS_TSIG_NAME=remora-test."
    echo "REMORA_DNS_TSIG_ALGORITHM=hmac-sha256"
    echo "REMORA_DNS_TSIG_SECRET_FILE=$W/tsig.secret"
  } >> "$DIR/env"
  echo "svc-dns: up (knotd 127.0.0.1:$PORT, zone $ZONE.)" >&2
}

case $cmd in
up) up ;;
down) stop ;;
*) echo "usage: svc-dns.sh up|down DIR" >&2; exit 2 ;;
esac
