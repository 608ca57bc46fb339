#!/usr/bin/env bash
# svc-mailman.sh up DIR | down DIR — GNU Mailman 3 (Debian's mailman3) beside
# mlmmj, on the Postfix and Dovecot of svc-mail.sh (which up.sh starts
# first), for the imap adapter's tests. Everything binds 127.0.0.1; state
# lives in DIR/mailman; the master is stopped by pid.
#
#   LMTP       127.0.0.1:10024  postfix hands it all mail for @lists.example.test
#                               (svc-mail.sh: relay_domains + transport_maps)
#   REST API   127.0.0.1:10801  (gunicorn; unused by the tests, but it binds)
#   outgoing   postfix's plain SMTP port 127.0.0.1:10025
#
# Lists (Mailman's default list settings unless named; testenv/mailman_lists.py):
#   kit@lists.example.test     dave, erin, frank    conformance kit
#   circle@lists.example.test  alice, bob, carol    nodes over the list
#   decor@lists.example.test   alice, bob           list header + non-ASCII footer
#   dmarc@lists.example.test   alice, bob           DMARC mitigation munge_from, always
#   mod@lists.example.test     alice, bob           member posts rejected
#
# Site settings that differ from Mailman's (none of them a list setting):
#   - no internet: the public suffix list comes from Debian's publicsuffix
#     package (copied into the var dir, and org_domain_data_url points at
#     the file), and DNS lookups (DMARC policy) get NXDOMAIN at once
#     (mailman-py/sitecustomize.py on PYTHONPATH); nntp runner off.
#   - max_autoresponses_per_day = 0 (no limit): the tests provoke more hold
#     notices per member and day than the default 10.
#   - runners poll their queues every 200 ms instead of 1 s (test speed),
#     and no runner naps longer than 2 s (so that it stops in seconds).
#
# Appends REMORA_MAILMAN_* lines to DIR/env.
set -euo pipefail

cmd=${1:?usage: svc-mailman.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
LMTP_PORT=${REMORA_MAILMAN_LMTP_PORT:-10024}
REST_PORT=${REMORA_MAILMAN_REST_PORT:-10801}
SMTP_PORT=${REMORA_MAIL_SMTP_PORT:-10025}
MAIL_DOMAIN=example.test
DOMAIN=lists.$MAIL_DOMAIN

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
W=$DIR/mailman
CFG=$W/mailman.cfg
PIDFILE=$W/var/master.pid
here=$(cd "$(dirname "$0")" && pwd)

install_pkgs() {
  if [ -x /usr/bin/mailman ] && [ -x /usr/lib/mailman3/bin/master ] && [ -s /usr/share/publicsuffix/public_suffix_list.dat ]; then
    return 0
  fi
  echo "svc-mailman: installing mailman3 and publicsuffix (~2-3 min)" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then # never let the packages start system daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  # no database set-up by dbconfig: the tests' Mailman has its own SQLite file
  echo "mailman3 mailman3/dbconfig-install boolean false" | debconf-set-selections
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends mailman3 publicsuffix >/dev/null
}

# The imap package's test binary holds this lock (REMORA_MAIL_LOCK) for its
# whole run; down waits for it, as svc-mail.sh does.
LOCK=$DIR/imap-tests.lock
wait_tests() {
  command -v flock >/dev/null || return 0
  exec 9>>"$LOCK"
  flock -w 600 9 || echo "svc-mailman: imap tests still running after 10 min; going on anyway" >&2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

master_pid() { [ -s "$PIDFILE" ] && tr -d ' \n' < "$PIDFILE"; }

alive() {
  local pid
  pid=$(master_pid) || return 1
  kill -0 "$pid" 2>/dev/null && port_open "$LMTP_PORT"
}

# stop SIGTERMs the master, which passes it on to its runners; a runner
# ends only after its current nap (up to sleep_time), so after 20 s the
# master's remaining children and the master get SIGKILL.
stop() {
  local pid kids
  pid=$(master_pid) || return 0
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kids=$(ps -o pid= --ppid "$pid" || true)
      echo "svc-mailman: master $pid still alive after 20 s, SIGKILL to it and its runners" >&2
      kill -KILL "$pid" $kids 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
}

mm() { PYTHONPATH="$W/py" mailman -C "$CFG" --run-as-root "$@"; }

# closefds closes every file descriptor above 2 of the (sub)shell: the
# Mailman master must not inherit the caller's open files (a lock fd of
# `flock /work/testenv.lock make testenv` would stay held while it runs).
closefds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  return 0
}

up() {
  install_pkgs
  if alive; then
    write_env
    echo "svc-mailman: already up" >&2
    return 0
  fi
  port_open "$SMTP_PORT" || { echo "svc-mailman: postfix is not answering on 127.0.0.1:$SMTP_PORT: run testenv/svc-mail.sh up $DIR first" >&2; exit 1; }
  stop
  local port
  for port in $LMTP_PORT $REST_PORT; do
    if port_open "$port"; then
      echo "svc-mailman: 127.0.0.1:$port is in use by a process this DIR did not start (another testenv DIR?)" >&2
      exit 1
    fi
  done
  rm -rf "$W"
  mkdir -p "$W/var" "$W/py"
  cp /usr/share/publicsuffix/public_suffix_list.dat "$W/var/public_suffix_list.dat"
  cp "$here/mailman_lists.py" "$W/py/"
  cat > "$W/py/sitecustomize.py" <<'EOF'
# remora testenv: no DNS may leave this machine. Mailman's DMARC rule looks
# up _dmarc TXT records with dnspython; every lookup here is NXDOMAIN at once.
import dns.resolver


def _nxdomain(self, qname, *args, **kwargs):
    raise dns.resolver.NXDOMAIN(qnames=[str(qname)])


dns.resolver.Resolver.resolve = _nxdomain
dns.resolver.Resolver.query = _nxdomain
EOF
  local pass
  pass=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  cat > "$CFG" <<EOF
# standalone config for remora's tests: nothing from /etc/mailman3 is read
[mailman]
site_owner: postmaster@$MAIL_DOMAIN
layout: testenv
max_autoresponses_per_day: 0

[paths.testenv]
var_dir: $W/var
bin_dir: /usr/lib/mailman3/bin
queue_dir: \$var_dir/queue
list_data_dir: \$var_dir/lists
log_dir: \$var_dir/logs
lock_dir: \$var_dir/locks
data_dir: \$var_dir/data
cache_dir: \$var_dir/cache
etc_dir: \$var_dir/etc
ext_dir: \$var_dir/ext
messages_dir: \$var_dir/messages
archive_dir: \$var_dir/archives
template_dir: \$var_dir/templates
pid_file: \$var_dir/master.pid
lock_file: \$lock_dir/master.lck

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///\$DATA_DIR/mailman.db

[webservice]
hostname: 127.0.0.1
port: $REST_PORT
admin_user: restadmin
admin_pass: $pass

[mta]
# postfix's maps are written by svc-mail.sh, not by Mailman
incoming: mailman.mta.null.NullMTA
outgoing: mailman.mta.deliver.deliver
smtp_host: 127.0.0.1
smtp_port: $SMTP_PORT
lmtp_host: 127.0.0.1
lmtp_port: $LMTP_PORT

[dmarc]
org_domain_data_url: file:///usr/share/publicsuffix/public_suffix_list.dat

[runner.nntp]
start: no
[runner.in]
sleep_time: 0.2s
[runner.pipeline]
sleep_time: 0.2s
[runner.out]
sleep_time: 0.2s
[runner.virgin]
sleep_time: 0.2s
[runner.command]
sleep_time: 0.2s
# short naps so that a stop takes seconds, not minutes
[runner.retry]
sleep_time: 2s
[runner.bounces]
sleep_time: 2s
[runner.task]
sleep_time: 2s
[runner.digest]
sleep_time: 2s
[runner.archive]
sleep_time: 2s
EOF
  (closefds; cd "$W" && mm start </dev/null >>"$W/start.log" 2>&1) || { echo "svc-mailman: mailman start failed" >&2; cat "$W/start.log" >&2; exit 1; }
  # Twelve Python runners import Mailman: seconds on an idle machine,
  # more than a minute on a loaded one.
  local t0=$SECONDS
  until port_open "$LMTP_PORT" && port_open "$REST_PORT"; do
    if [ $((SECONDS - t0)) -gt 600 ] || { [ $((SECONDS - t0)) -gt 30 ] && ! kill -0 "$(master_pid)" 2>/dev/null; }; then
      echo "svc-mailman: Mailman did not start" >&2
      cat "$W/start.log" "$W/var/logs/mailman.log" >&2 || true
      stop
      exit 1
    fi
    sleep 0.2
  done
  local m=$MAIL_DOMAIN
  (cd "$W" && mm shell -r mailman_lists.setup "$DOMAIN" \
    "kit=dave@$m,erin@$m,frank@$m" \
    "circle=alice@$m,bob@$m,carol@$m" \
    "decor=alice@$m,bob@$m:header" \
    "dmarc=alice@$m,bob@$m:dmarc" \
    "mod=alice@$m,bob@$m:reject" </dev/null >>"$W/start.log" 2>&1) || { echo "svc-mailman: creating the lists failed" >&2; cat "$W/start.log" >&2; stop; exit 1; }
  write_env
  echo "svc-mailman: up (LMTP $LMTP_PORT, REST $REST_PORT, lists @$DOMAIN) in $((SECONDS - t0)) s after start" >&2
}

write_env() {
  {
    echo "REMORA_MAILMAN_DOMAIN=$DOMAIN"
    echo "REMORA_MAILMAN_KIT_LIST=kit@$DOMAIN"
    echo "REMORA_MAILMAN_KIT_LIST_MEMBERS=dave erin frank"
    echo "REMORA_MAILMAN_LIST=circle@$DOMAIN"
    echo "REMORA_MAILMAN_LIST_MEMBERS=alice bob carol"
    echo "REMORA_MAILMAN_DECOR_LIST=decor@$DOMAIN"
    echo "REMORA_MAILMAN_DMARC_LIST=dmarc@$DOMAIN"
    echo "REMORA_MAILMAN_REJECT_LIST=mod@$DOMAIN"
    echo "REMORA_MAILMAN_CFG=$CFG"
  } >> "$DIR/env"
}

down() {
  wait_tests
  stop
}

case $cmd in
up) up ;;
down) down ;;
*) echo "usage: svc-mailman.sh up|down DIR" >&2; exit 2 ;;
esac
