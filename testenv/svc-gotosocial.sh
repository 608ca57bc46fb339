#!/usr/bin/env bash
# svc-gotosocial.sh up DIR | down DIR — a GoToSocial v0.19.2 server (a real
# Mastodon-API server) for the mastodon adapter's tests, on 127.0.0.1 only,
# SQLite, federation off, no outbound connections.
#
#   http://localhost:18080   -> REMORA_GTS_URL
#
# The host name is `localhost`, not 127.0.0.1: the sign-in session cookie is
# bound to the configured host name, so the OAuth pages work only through it.
# Requests from 127.0.0.1 are exempt from the rate limit (300 requests per 5
# minutes per client IP, GoToSocial's default); a test that wants it puts a
# proxy in front that sets X-Forwarded-For (127.0.0.1 is a trusted proxy).
#
# Accounts: `alice` and `bob` are created here with the admin CLI, and their
# tokens obtained through the real OAuth authorization-code flow (out-of-band
# redirect, sign-in form, approval) -> REMORA_GTS_ALICE_TOKEN,
# REMORA_GTS_BOB_TOKEN. Tests make their own accounts the same way
# (testenv/gotosocial), with REMORA_GTS_BIN and REMORA_GTS_CONFIG.
#
# Install: the module github.com/superseriousbusiness/gotosocial@v0.19.2
# through the Go module proxy (its module path inside is
# code.superseriousbusiness.org/gotosocial and it ships a partial vendor
# folder, so it is built inside the extracted module with that folder
# removed, with the toolchain its go.mod names). The binary and the web
# templates and assets it needs are cached in GTS_CACHE (default
# /var/cache/remora-testenv/gotosocial-v0.19.2), outside the checkout; a
# second run finds them and starts in seconds.
# Env: GTS_CACHE, GTS_PORT (18080).
set -euo pipefail

VERSION=v0.19.2
MODULE=github.com/superseriousbusiness/gotosocial
CACHE=${GTS_CACHE:-/var/cache/remora-testenv/gotosocial-$VERSION}
BIN=$CACHE/gotosocial
PORT=${GTS_PORT:-18080}
HOSTNAME_=localhost
URL=http://$HOSTNAME_:$PORT

installed() {
  [ -x "$BIN" ] && [ -f "$CACHE/web/template/sign-in.tmpl" ] && [ -d "$CACHE/web/assets" ] &&
    "$BIN" --version 2>/dev/null | grep -q "$VERSION"
}

install_gts() {
  installed && return 0
  echo "svc-gotosocial: building GoToSocial $VERSION into $CACHE (cold: about 10 min on 2 idle cores)" >&2
  mkdir -p "$CACHE"
  local scratch src tc
  scratch=$(mktemp -d)
  # Download from a scratch dir so no project go.mod is involved.
  src=$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { echo "svc-gotosocial: go mod download $MODULE@$VERSION failed" >&2; return 1; }
  cp -r "$src" "$scratch/src"
  chmod -R u+w "$scratch/src"
  rm -rf "$scratch/src/vendor" # partial: building with it fails
  # The toolchain its go.mod asks for (fetched through the module proxy).
  tc=$(sed -n 's/^toolchain \(go[0-9.]*\)$/\1/p' "$scratch/src/go.mod")
  [ -n "$tc" ] || tc=go$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$scratch/src/go.mod")
  # GoToSocial's own release tags (scripts/build.sh), plus nootel: no
  # OpenTelemetry, a smaller and faster build.
  (cd "$scratch/src" && env GOTOOLCHAIN="$tc" CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -tags "netgo osusergo static_build kvformat timetzdata nootel" \
      -ldflags "-s -w -X main.Version=$VERSION" -o "$CACHE/gotosocial.tmp" ./cmd/gotosocial)
  rm -rf "$CACHE/web"
  mkdir -p "$CACHE/web"
  cp -r "$scratch/src/web/template" "$scratch/src/web/assets" "$CACHE/web/"
  mv "$CACHE/gotosocial.tmp" "$BIN"
  rm -rf "$scratch"
  installed || { echo "svc-gotosocial: the built binary does not report $VERSION" >&2; return 1; }
}

# write_config W: everything that could reach outside is off; see
# internal/config/defaults.go of v0.19.2 for what is left at its default.
write_config() {
  local w=$1
  cat > "$w/config.yaml" <<YAML
log-level: "warn"
log-client-ip: false
host: "$HOSTNAME_"
protocol: "http"
bind-address: "127.0.0.1"
port: $PORT
trusted-proxies: ["127.0.0.1/32", "::1"]
db-type: "sqlite"
db-address: "$w/sqlite.db"
web-template-base-dir: "$CACHE/web/template/"
web-asset-base-dir: "$CACHE/web/assets/"
storage-local-base-path: "$w/storage"
# Stock Mastodon's limit (GoToSocial's default is 5000), so that envelopes
# are fragmented over several posts as on most servers.
statuses-max-chars: 500
accounts-registration-open: false
# No federation: only allow-listed domains (none) are ever contacted, and
# the HTTP client may dial no address at all.
instance-federation-mode: "allowlist"
instance-expose-peers: false
instance-deliver-to-shared-inboxes: false
http-client:
  block-ips: ["0.0.0.0/0", "::/0"]
letsencrypt-enabled: false
smtp-host: ""
oidc-enabled: false
tracing-enabled: false
metrics-enabled: false
syslog-enabled: false
media-ffmpeg-pool-size: 1
advanced-rate-limit-requests: 300
advanced-rate-limit-exceptions: ["127.0.0.1/32", "::1/128"]
cache:
  memory-target: "64MiB"
YAML
}

running() { [ -f "$1/gotosocial.pid" ] && kill -0 "$(cat "$1/gotosocial.pid")" 2>/dev/null; }

start() {
  local w=$1
  if ! running "$w"; then
    # The compiled ffmpeg/ffprobe WebAssembly modules are cached next to the
    # binary: compiling them is most of a cold start.
    mkdir -p "$CACHE/wazero"
    (cd "$w" || exit 1
     GTS_WAZERO_COMPILATION_CACHE=$CACHE/wazero nohup "$BIN" --config-path "$w/config.yaml" server start \
      </dev/null >>"$w/gotosocial.log" 2>&1 & echo $! > "$w/gotosocial.pid")
  fi
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "$URL/api/v1/instance" 2>/dev/null; then return 0; fi
    if ! running "$w"; then echo "svc-gotosocial: gotosocial exited; log:" >&2; tail -20 "$w/gotosocial.log" >&2; return 1; fi
    sleep 0.1
  done
  echo "svc-gotosocial: gotosocial not ready after 60 s; log:" >&2; tail -20 "$w/gotosocial.log" >&2; return 1
}

stop() {
  local w=$1 pid
  running "$w" || return 0
  pid=$(cat "$w/gotosocial.pid")
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$w/gotosocial.pid"
}

# account W NAME: create NAME (if new) with the admin CLI; its email is
# NAME@example.org and its password in W/NAME.password.
account() {
  local w=$1 name=$2
  local pwfile=$w/$name.password pw
  [ -f "$pwfile" ] && return 0
  pw="Pw-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
  "$BIN" --config-path "$w/config.yaml" admin account create \
    --username "$name" --email "$name@example.org" --password "$pw" >>"$w/admin.log" 2>&1 ||
    { echo "svc-gotosocial: admin account create $name failed:" >&2; tail -5 "$w/admin.log" >&2; return 1; }
  echo "$pw" > "$pwfile"
}

# token W NAME: an access token for NAME through the OAuth authorization-code
# flow with the out-of-band redirect, as a person does it in a browser:
# register an app, open the authorize URL, sign in, allow, read the code.
token() {
  local w=$1 name=$2 jar app cid csecret code
  local oob=urn:ietf:wg:oauth:2.0:oob
  jar=$(mktemp)
  app=$(curl -fsS -X POST "$URL/api/v1/apps" -F client_name=testenv -F "redirect_uris=$oob" -F "scopes=read write")
  cid=$(sed -n 's/.*"client_id":"\([^"]*\)".*/\1/p' <<<"$app")
  csecret=$(sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p' <<<"$app")
  curl -fsS -o /dev/null -c "$jar" -b "$jar" -L \
    "$URL/oauth/authorize?client_id=$cid&redirect_uri=$oob&response_type=code&scope=read+write"
  # Sign in; the answer redirects to the approval page (followed, as GET).
  curl -fsS -o /dev/null -c "$jar" -b "$jar" -L "$URL/auth/sign_in" \
    --data-urlencode "username=$name@example.org" --data-urlencode "password=$(cat "$w/$name.password")"
  # Allow; the answer redirects to the page showing the code.
  code=$(curl -fsS -c "$jar" -b "$jar" -L --data "" "$URL/oauth/authorize" |
    sed -n '/class="oob-token"/,/<\/section>/s/.*<code>\([^<]*\)<\/code>.*/\1/p')
  rm -f "$jar"
  [ -n "$code" ] || { echo "svc-gotosocial: no authorization code for $name" >&2; return 1; }
  curl -fsS -X POST "$URL/oauth/token" -F grant_type=authorization_code -F "code=$code" \
    -F "client_id=$cid" -F "client_secret=$csecret" -F "redirect_uri=$oob" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}

cmd=${1:?usage: svc-gotosocial.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
case $cmd in
  up)
    install_gts
    mkdir -p "$DIR/gotosocial"
    DIR=$(cd "$DIR" && pwd)
    W=$DIR/gotosocial
    write_config "$W"
    start "$W"
    for name in alice bob; do
      account "$W" "$name"
      [ -s "$W/$name.token" ] || token "$W" "$name" > "$W/$name.token"
      [ -s "$W/$name.token" ] || { echo "svc-gotosocial: no token for $name" >&2; exit 1; }
    done
    {
      echo "REMORA_GTS_URL=$URL"
      echo "REMORA_GTS_BIN=$BIN"
      echo "REMORA_GTS_CONFIG=$W/config.yaml"
      echo "REMORA_GTS_ALICE_TOKEN=$(cat "$W/alice.token")"
      echo "REMORA_GTS_BOB_TOKEN=$(cat "$W/bob.token")"
    } >> "$DIR/env"
    echo "svc-gotosocial: GoToSocial $VERSION up on $URL (127.0.0.1:$PORT)" >&2
    ;;
  down)
    [ -d "$DIR/gotosocial" ] && stop "$DIR/gotosocial"
    ;;
  *) echo "usage: svc-gotosocial.sh up|down DIR" >&2; exit 2 ;;
esac
