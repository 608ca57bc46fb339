#!/usr/bin/env bash
# down.sh DIR — stop every server up.sh started, by the pids it recorded,
# and drop DIR/env.
set -uo pipefail
DIR=${1:-/tmp/remora-testenv}
here=$(cd "$(dirname "$0")" && pwd)
for svc in "$here"/svc-*.sh; do
  [ -e "$svc" ] || continue
  bash "$svc" down "$DIR" || true
done
# The addresses are stale now: without them, tests say the servers are not
# running (and how to start them) instead of failing on refused connections.
rm -f "$DIR/env"
