#!/usr/bin/env bash
# svc-matrix.sh up DIR | down DIR — Dendrite v0.13.8 homeservers for the
# matrix adapter's tests, on 127.0.0.1 only, SQLite, federation disabled.
#
#   main instance  127.0.0.1:18008  rate limiting off  -> REMORA_MATRIX_URL
#   rl instance    127.0.0.1:18009  rate limiting on   -> REMORA_MATRIX_RL_URL
#                  (threshold 5 requests, cool-off 500 ms: Dendrite's defaults)
#
# Users are made by the tests with shared-secret registration
# (REMORA_MATRIX_SECRET, /_synapse/admin/v1/register). Each instance keeps its
# files in DIR/matrix/<name>/ and its pid in DIR/matrix/<name>/dendrite.pid;
# tests may stop and restart an instance through REMORA_MATRIX_DIR
# (DIR/matrix/main) with `svc-matrix.sh restart-instance INSTDIR`.
# Env: DENDRITE_BIN (default /usr/local/bin/dendrite), MATRIX_PORT (18008),
#      MATRIX_RL_PORT (18009), MATRIX_INSTANCES ("main rl"; a private
#      instance for one test starts "main" only).
set -euo pipefail

VERSION=v0.13.8
BIN=${DENDRITE_BIN:-/usr/local/bin/dendrite}
PORT=${MATRIX_PORT:-18008}
RL_PORT=${MATRIX_RL_PORT:-18009}

install_dendrite() {
  if [ -x "$BIN" ] && go version -m "$BIN" 2>/dev/null | grep -q "github.com/matrix-org/dendrite[[:space:]]*$VERSION"; then
    return 0
  fi
  echo "svc-matrix: installing dendrite $VERSION into $(dirname "$BIN") (about 3 min, needs gcc for sqlite)" >&2
  # Run from a scratch dir so the project's go.mod is not touched.
  (cd "$(mktemp -d)" && GOBIN=$(dirname "$BIN") go install "github.com/matrix-org/dendrite/cmd/dendrite@$VERSION")
}

# write_config INSTDIR RATELIMIT(true|false)
write_config() {
  local w=$1 rl=$2 secret=$3
  if [ ! -f "$w/matrix_key.pem" ]; then
    # The PEM body is a 32-byte Ed25519 seed: no generate-keys needed.
    { echo "-----BEGIN MATRIX PRIVATE KEY-----"; echo "Key-ID: ed25519:test"; echo
      head -c 32 /dev/urandom | base64; echo "-----END MATRIX PRIVATE KEY-----"; } > "$w/matrix_key.pem"
  fi
  db() { printf 'file:%s/%s.db' "$w" "$1"; }
  cat > "$w/dendrite.yaml" <<YAML
version: 2
global:
  server_name: localhost
  private_key: $w/matrix_key.pem
  key_validity_period: 168h0m0s
  disable_federation: true
  trusted_third_party_id_servers: []
  presence: { enable_inbound: false, enable_outbound: false }
  jetstream: { in_memory: true, storage_path: $w/jetstream, topic_prefix: Dendrite }
  metrics: { enabled: false }
  dns_cache: { enabled: false }
  server_notices: { enabled: false }
  report_stats: { enabled: false }
  cache: { max_size_estimated: 64mb, max_age: 1h }
client_api:
  registration_disabled: true
  registration_shared_secret: "$secret"
  guests_disabled: true
  enable_registration_captcha: false
  rate_limiting:
    enabled: $rl
    threshold: 5
    cooloff_ms: 500
federation_api:
  database: { connection_string: $(db federationapi) }
  key_perspectives: []
  send_max_retries: 1
key_server: { database: { connection_string: $(db keyserver) } }
media_api:
  database: { connection_string: $(db mediaapi) }
  base_path: $w/media
room_server: { database: { connection_string: $(db roomserver) } }
sync_api:
  database: { connection_string: $(db syncapi) }
  search: { enabled: false }
user_api:
  bcrypt_cost: 4
  account_database: { connection_string: $(db userapi) }
relay_api: { database: { connection_string: $(db relayapi) } }
mscs: { mscs: [], database: { connection_string: $(db mscs) } }
logging:
- { type: std, level: warn }
YAML
}

running() { [ -f "$1/dendrite.pid" ] && kill -0 "$(cat "$1/dendrite.pid")" 2>/dev/null; }

# start INSTDIR PORT: start (if not running) and wait for the client API.
start() {
  local w=$1 port=$2 url="http://127.0.0.1:$2"
  if ! running "$w"; then
    (cd "$w" || exit 1
     nohup "$BIN" --config "$w/dendrite.yaml" \
      --http-bind-address "127.0.0.1:$port" --https-bind-address "127.0.0.1:0" \
      </dev/null >>"$w/dendrite.log" 2>&1 & echo $! > "$w/dendrite.pid")
  fi
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url/_matrix/client/versions" 2>/dev/null; then return 0; fi
    if ! running "$w"; then echo "svc-matrix: dendrite ($w) exited; log:" >&2; tail -20 "$w/dendrite.log" >&2; return 1; fi
    sleep 0.1
  done
  echo "svc-matrix: dendrite ($w) not ready after 30 s" >&2; return 1
}

stop() {
  local w=$1 pid
  running "$w" || return 0
  pid=$(cat "$w/dendrite.pid")
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$w/dendrite.pid"
}

cmd=${1:?usage: svc-matrix.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
case $cmd in
  up)
    install_dendrite
    mkdir -p "$DIR/matrix"
    DIR=$(cd "$DIR" && pwd)
    secret_file="$DIR/matrix/secret"
    [ -f "$secret_file" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$secret_file"
    secret=$(cat "$secret_file")
    for inst in ${MATRIX_INSTANCES:-main rl}; do
      mkdir -p "$DIR/matrix/$inst"
      rl=false; port=$PORT
      [ "$inst" = rl ] && { rl=true; port=$RL_PORT; }
      write_config "$DIR/matrix/$inst" "$rl" "$secret"
      echo "$port" > "$DIR/matrix/$inst/port"
      start "$DIR/matrix/$inst" "$port"
    done
    {
      echo "REMORA_MATRIX_URL=http://127.0.0.1:$PORT"
      echo "REMORA_MATRIX_SECRET=$secret"
      echo "REMORA_MATRIX_DIR=$DIR/matrix/main"
      echo "REMORA_MATRIX_RL_URL=http://127.0.0.1:$RL_PORT"
      echo "REMORA_MATRIX_SCRIPT=$(cd "$(dirname "$0")" && pwd)/svc-matrix.sh"
    } >> "$DIR/env"
    echo "svc-matrix: dendrite up on 127.0.0.1:$PORT (rate limits off) and :$RL_PORT (on)" >&2
    ;;
  down)
    for inst in main rl; do [ -d "$DIR/matrix/$inst" ] && stop "$DIR/matrix/$inst"; done
    ;;
  stop-instance)      # stop-instance INSTDIR: used by tests (homeserver down mid-stream)
    stop "$DIR" ;;
  start-instance)     # start-instance INSTDIR
    start "$DIR" "$(cat "$DIR/port")" ;;
  *) echo "usage: svc-matrix.sh up|down DIR" >&2; exit 2 ;;
esac
