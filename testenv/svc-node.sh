#!/usr/bin/env bash
# svc-node.sh up DIR | down DIR — Node.js and the npm packages of the
# JavaScript reference adapter (examples/node), for its tests. Nothing runs:
# `up` installs Node.js from Debian if it is missing, and the packages in
# examples/node/package.json with npm into a cache outside the checkout
# (/var/cache/remora-testenv/node/<hash of package.json>; never a
# node_modules in the repository), idempotently.
#
# Appends to DIR/env: REMORA_NODE (the node executable) and
# REMORA_NODE_MODULES (the packages, for NODE_PATH).
# Cold install (apt-get nodejs npm, npm install): about 30 s.
set -euo pipefail

cmd=${1:?usage: svc-node.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
here=$(cd "$(dirname "$0")/.." && pwd)
pkg=$here/examples/node/package.json

case $cmd in
down) exit 0 ;;
up) ;;
*) echo "usage: svc-node.sh up|down DIR" >&2; exit 2 ;;
esac

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "svc-node: installing nodejs and npm from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
  }
fi
node=$(command -v node)

hash=$(sha256sum "$pkg" | cut -c1-16)
cache=${REMORA_NODE_CACHE:-/var/cache/remora-testenv/node}/$hash
mkdir -p "$cache"
(
  flock 9
  if [ ! -e "$cache/node_modules/.installed" ]; then
    echo "svc-node: npm install into $cache"
    cp "$pkg" "$cache/package.json"
    (cd "$cache" && npm install --no-audit --no-fund --omit=dev --loglevel=error >/dev/null)
    touch "$cache/node_modules/.installed"
  fi
) 9>"$cache.lock"

mkdir -p "$DIR"
sed -i '/^REMORA_NODE=/d; /^REMORA_NODE_MODULES=/d' "$DIR/env" 2>/dev/null || true
{
  echo "REMORA_NODE=$node"
  echo "REMORA_NODE_MODULES=$cache/node_modules"
} >>"$DIR/env"
echo "svc-node: node $("$node" --version), packages in $cache/node_modules"
