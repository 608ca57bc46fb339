#!/usr/bin/env bash
# svc-web.sh up DIR | down DIR — real web servers for the static web file
# bootstrap box's tests, on 127.0.0.1 only, all state under DIR/web, stopped
# by pid.
#
#   apache2 + mod_dav      http://127.0.0.1:18480/  serves DIR/web/dav; GET
#                          for anyone (with ETags), PUT (WebDAV, honouring
#                          If-Match) only with basic auth (user remora,
#                          password in DIR/web/password)
#   php -S                 http://127.0.0.1:18481/remora-board.php runs the
#                          repository's drop-box script
#                          core/webbox/php/remora-board.php (entries in
#                          DIR/web/php-board, write token in DIR/web/token)
#
# Appends to DIR/env: REMORA_WEB_DAV_URL, REMORA_WEB_DAV_USER,
# REMORA_WEB_DAV_PASSWORD_FILE, REMORA_WEB_DROPBOX_URL, REMORA_WEB_DROPBOX_TOKEN_FILE.
# Cold install (apt-get install apache2 php-cli): about 45 s on the 2-core
# machine. (lighttpd 1.4.69's mod_webdav was tried first: its GET sends no
# ETag, so conditional reads and writes cannot be tested against it.)
set -euo pipefail

cmd=${1:?usage: svc-web.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
DAV_PORT=${REMORA_WEB_DAV_PORT:-18480}
PHP_PORT=${REMORA_WEB_PHP_PORT:-18481}
here=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
W=$DIR/web

alive() { [ -s "$W/$1" ] && kill -0 "$(cat "$W/$1")" 2>/dev/null; }

stop() {
  local pids=() f pid
  for f in apache.pid php.pid; do
    [ -s "$W/$f" ] || continue
    pid=$(cat "$W/$f")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$W/$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then echo "svc-web: $pid still alive, SIGKILL" >&2; kill -KILL "$pid"; fi
  done
}

wait_http() { # PORT NAME LOG PIDFILE
  for _ in $(seq 200); do
    if ! kill -0 "$(cat "$4")" 2>/dev/null; then
      echo "svc-web: $2 exited (port 127.0.0.1:$1 taken?); log:" >&2; tail -20 "$3" >&2; rm -f "$4"; return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "svc-web: $2 not listening on 127.0.0.1:$1; log:" >&2; tail -20 "$3" >&2; return 1
}

install_pkgs() {
  [ -x /usr/sbin/apache2 ] && [ -e /usr/lib/apache2/modules/mod_dav_fs.so ] && command -v htpasswd >/dev/null && command -v php >/dev/null && command -v minisign >/dev/null && return 0
  echo "svc-web: installing apache2, php-cli, minisign (~45 s)" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then # never let the packages start system daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends apache2 apache2-utils php-cli minisign >/dev/null
}

up() {
  install_pkgs
  # The daemons must not inherit our caller's descriptors: a `flock
  # /work/testenv.lock` around this script would stay locked while they run.
  local fd
  for fd in $(ls /proc/$$/fd); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
  mkdir -p "$W/dav" "$W/php-board"
  [ -s "$W/password" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$W/password")
  [ -s "$W/token" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$W/token")
  if ! alive apache.pid; then
    mkdir -p "$W/davlock"
    htpasswd -bcB "$W/htpasswd" remora "$(cat "$W/password")" 2>/dev/null
    # apache started as root serves as www-data
    chown -R www-data "$W/dav" "$W/davlock"
    chmod 644 "$W/htpasswd"
    local m=/usr/lib/apache2/modules
    cat > "$W/apache.conf" <<CONF
LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authn_core_module $m/mod_authn_core.so
LoadModule authn_file_module $m/mod_authn_file.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule authz_user_module $m/mod_authz_user.so
LoadModule auth_basic_module $m/mod_auth_basic.so
LoadModule dav_module $m/mod_dav.so
LoadModule dav_fs_module $m/mod_dav_fs.so
ServerName 127.0.0.1
Listen 127.0.0.1:$DAV_PORT
User www-data
Group www-data
PidFile "$W/apache.pidfile"
ErrorLog "$W/apache-error.log"
DocumentRoot "$W/dav"
DavLockDB "$W/davlock/lockdb"
<Directory "$W/dav">
  Dav On
  AuthType Basic
  AuthName remora
  AuthUserFile "$W/htpasswd"
  <LimitExcept GET HEAD OPTIONS>
    Require valid-user
  </LimitExcept>
</Directory>
CONF
    nohup /usr/sbin/apache2 -DFOREGROUND -f "$W/apache.conf" </dev/null >"$W/apache.out" 2>&1 &
    echo $! > "$W/apache.pid"
    wait_http "$DAV_PORT" apache2 "$W/apache.out" "$W/apache.pid"
  fi
  if ! alive php.pid; then
    mkdir -p "$W/php-root"
    cp "$here/core/webbox/php/remora-board.php" "$W/php-root/remora-board.php"
    REMORA_BOARD_DIR="$W/php-board" REMORA_BOARD_TOKEN="$(cat "$W/token")" \
      nohup php -S "127.0.0.1:$PHP_PORT" -t "$W/php-root" </dev/null >"$W/php.log" 2>&1 &
    echo $! > "$W/php.pid"
    wait_http "$PHP_PORT" "php -S" "$W/php.log" "$W/php.pid"
  fi
  {
    echo "REMORA_WEB_DAV_URL=http://127.0.0.1:$DAV_PORT"
    echo "REMORA_WEB_DAV_USER=remora"
    echo "REMORA_WEB_DAV_PASSWORD_FILE=$W/password"
    echo "REMORA_WEB_DROPBOX_URL=http://127.0.0.1:$PHP_PORT/remora-board.php"
    echo "REMORA_WEB_DROPBOX_TOKEN_FILE=$W/token"
  } >> "$DIR/env"
  echo "svc-web: up (apache2+mod_dav $DAV_PORT, php -S $PHP_PORT)" >&2
}

case $cmd in
up) up ;;
down) stop ;;
*) echo "usage: svc-web.sh up|down DIR" >&2; exit 2 ;;
esac
