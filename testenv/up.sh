#!/usr/bin/env bash
# up.sh DIR — install (idempotently) and start every real server the tests
# need, on 127.0.0.1 only. Each service has its own script in this folder,
# started here; addresses go to DIR/env as KEY=VALUE lines for the tests.
set -euo pipefail
DIR=${1:-/tmp/remora-testenv}
mkdir -p "$DIR"
chmod 755 "$DIR"
: > "$DIR/env"
here=$(cd "$(dirname "$0")" && pwd)
for svc in "$here"/svc-*.sh; do
  [ -e "$svc" ] || continue
  echo "testenv: starting $(basename "$svc" .sh)"
  bash "$svc" up "$DIR"
done
echo "testenv: ready ($DIR/env)"
cat "$DIR/env"
