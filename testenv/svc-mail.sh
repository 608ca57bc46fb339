#!/usr/bin/env bash
# svc-mail.sh up|down|stop|start|addlist DIR — a throw-away mail system for the imap adapter's
# tests, on 127.0.0.1 only, all state under DIR/mail, every daemon stopped by pid.
#
#   postfix  SMTP        127.0.0.1:10025  no auth, STARTTLS offered; accepts mail for
#                                          @example.test only, never relays anywhere
#            submission  127.0.0.1:10587  STARTTLS required, SMTP AUTH (dovecot SASL)
#            SMTPS       127.0.0.1:10465  implicit TLS, SMTP AUTH
#   dovecot  IMAP        127.0.0.1:10143  STARTTLS offered, plaintext login allowed (tests)
#            IMAPS       127.0.0.1:10993  implicit TLS; LMTP on a unix socket
#   mlmmj    lists       circle@example.test: alice, bob, carol
#                        kit@example.test:    dave, erin, frank
#   mailman  lists       @lists.example.test: relayed over LMTP to
#                        127.0.0.1:10024, where svc-mailman.sh runs Mailman 3
#
# TLS: a throw-away CA (DIR/mail/tls/ca.pem) signs the server certificate for
# 127.0.0.1 and localhost. Mail to user+detail@example.test lands in the folder
# "detail" of user's mailbox (created on demand), so tests can isolate
# themselves. The user "tiny" has a 64 KiB quota (quota error paths).
#
# Appends REMORA_MAIL_* lines to DIR/env. Recipe and gotchas:
# ../shared/testenv/NOTES.md §2 (policy-rc.d, debconf preseed, cool-down of
# postfix config files, no chroot, sockets < 108 bytes, dovecot uid 8).
set -euo pipefail

cmd=${1:?usage: svc-mail.sh up|down|stop|start DIR}
DIR=${2:-/tmp/remora-testenv}
SMTP_PORT=${REMORA_MAIL_SMTP_PORT:-10025}
SUBM_PORT=${REMORA_MAIL_SUBMISSION_PORT:-10587}
SMTPS_PORT=${REMORA_MAIL_SMTPS_PORT:-10465}
IMAP_PORT=${REMORA_MAIL_IMAP_PORT:-10143}
IMAPS_PORT=${REMORA_MAIL_IMAPS_PORT:-10993}
MAILMAN_LMTP_PORT=${REMORA_MAILMAN_LMTP_PORT:-10024}
DOMAIN=example.test
LISTS_DOMAIN=lists.$DOMAIN # Mailman's (svc-mailman.sh)
USERS="alice bob carol dave erin frank tiny"
MAILUSER=mail # Debian system user (uid 8): owns maildirs and the mlmmj spool

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
W=$DIR/mail

stop() {
  local pids=() f pid
  for f in postfix.pid dovecot.pid; do
    [ -s "$W/$f" ] || continue
    pid=$(tr -d ' \n' < "$W/$f")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$W/$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then echo "svc-mail: $pid still alive, SIGKILL" >&2; kill -KILL "$pid"; fi
  done
}

install_pkgs() {
  local missing=0 b
  for b in dovecot postconf /usr/bin/mlmmj-receive /usr/lib/dovecot/lmtp openssl; do
    [ -x "$b" ] || command -v "$b" >/dev/null || missing=1
  done
  [ $missing = 0 ] && return 0
  echo "svc-mail: installing postfix, dovecot, mlmmj (~100 s)" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then # never let the packages start system daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends postfix dovecot-imapd dovecot-lmtpd mlmmj openssl >/dev/null
}

# mklist NAME MEMBER... : an mlmmj list NAME@DOMAIN
mklist() {
  local name=$1 m
  shift
  printf '%s\npostmaster@%s\nen\ny\n' "$DOMAIN" "$DOMAIN" \
    | mlmmj-make-ml -L "$name" -s "$W/mlmmj" -c "$MAILUSER" >"$W/mlmmj/make-$name.log" 2>&1
  local C=$W/mlmmj/$name/control
  echo 127.0.0.1 > "$C/relayhost"
  echo "$SMTP_PORT" > "$C/smtpport"
  # mlmmj 1.3 adds no List-Id by itself
  printf 'List-Id: %s <%s.%s>\nList-Post: <mailto:%s@%s>\n' "$name" "$name" "$DOMAIN" "$name" "$DOMAIN" > "$C/customheaders"
  for m in "$@"; do /usr/bin/mlmmj-sub -L "$W/mlmmj/$name" -a "$m@$DOMAIN" -f -q -s -U; done
  echo "$name@$DOMAIN $name@mlmmj.invalid" >> "$P/virtual"
  echo "$name@mlmmj.invalid mlmmj:$name" >> "$P/transport"
}

# addlist NAME MEMBER... : a new mlmmj list on the running system; postfix
# reloads its maps (the scale benchmark's list of many plus addresses)
addlist() {
  P=$W/postfix
  [ -d "$W/mlmmj/$1" ] && { echo "svc-mail: list $1 exists" >&2; exit 1; }
  mklist "$@"
  chown -R "$MAILUSER:$MAILUSER" "$W/mlmmj/$1"
  postfix -c "$P" reload >/dev/null 2>&1
}

# The imap package's test binary holds LOCK (flock) for its whole run
# (imap/kit_test.go TestMain); it lives beside W, which up may wipe.
LOCK=$DIR/imap-tests.lock

# wait_tests blocks (up to 10 min) until no imap test run holds LOCK; the
# lock stays held on fd 9 until this script exits.
wait_tests() {
  command -v flock >/dev/null || return 0
  exec 9>>"$LOCK"
  flock -w 600 9 || echo "svc-mail: imap tests still running after 10 min; going on anyway" >&2
}

# closefds closes every file descriptor above 2 of the (sub)shell: daemons
# started from it must not inherit the caller's open files — a lock fd of
# `flock /work/testenv.lock make testenv` kept by dovecot would hold that
# lock for as long as dovecot runs.
closefds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  return 0
}

alive() {
  local f
  for f in postfix.pid dovecot.pid; do
    [ -s "$W/$f" ] && kill -0 "$(tr -d ' \n' < "$W/$f")" 2>/dev/null || return 1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT") 2>/dev/null
}

# start_dovecot and start_postfix run the daemons on the configuration and
# data under $W that up made: up uses them, and `start` after `stop` restarts
# the same mail system (a test's private instance, stopped on purpose).
start_dovecot() {
  local D=$W/dovecot
  rm -f "$D/run/master.pid"
  (closefds; exec dovecot -c "$D/dovecot.conf" </dev/null >>"$D/dovecot-start.log" 2>&1)
  for _ in $(seq 600); do
    [ -S "$D/run/lmtp" ] && [ -s "$D/run/master.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT") 2>/dev/null && break
    sleep 0.05
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT") 2>/dev/null || { echo "svc-mail: dovecot did not start" >&2; cat "$D/dovecot-start.log" "$D/dovecot.log" >&2; exit 1; }
  cp "$D/run/master.pid" "$W/dovecot.pid"
}

start_postfix() {
  local Q=$W/postfix-spool
  rm -f "$Q/pid/master.pid"
  (closefds; exec "$(postconf -h daemon_directory)/master" -c "$W/postfix" -w </dev/null >>"$W/postfix-start.log" 2>&1)
  for _ in $(seq 600); do
    [ -s "$Q/pid/master.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break
    sleep 0.05
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null || { echo "svc-mail: postfix did not start" >&2; cat "$W/postfix-start.log" "$W/postfix.log" >&2; exit 1; }
  tr -d ' ' < "$Q/pid/master.pid" > "$W/postfix.pid" # "%10d"-padded
}

up() {
  install_pkgs
  # idempotent: a running, answering instance is kept (tests may be using
  # it); anything else is stopped and replaced by a fresh one
  if alive; then
    write_env
    echo "svc-mail: already up" >&2
    return 0
  fi
  # a test may have stopped dovecot for a moment (restart test): let it
  # end; then let go of the lock, or the daemons would inherit it
  wait_tests
  exec 9>&-
  if alive; then
    write_env
    echo "svc-mail: already up" >&2
    return 0
  fi
  stop
  local port
  for port in $SMTP_PORT $SUBM_PORT $SMTPS_PORT $IMAP_PORT $IMAPS_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "svc-mail: 127.0.0.1:$port is in use by a process this DIR did not start (another testenv DIR?)" >&2
      exit 1
    fi
  done
  rm -rf "$W"
  [ ${#W} -le 60 ] || { echo "svc-mail: $W too long for unix sockets (max 60 chars)" >&2; exit 1; }
  chmod 755 "$DIR"
  mkdir -p "$W"
  chmod 755 "$W"
  D=$W/dovecot P=$W/postfix Q=$W/postfix-spool T=$W/tls
  mkdir -p "$D/state" "$P" "$W/mlmmj" "$W/maildirs" "$T" "$Q" "$W/postfix-data"
  chown "$MAILUSER:$MAILUSER" "$W/maildirs"
  chown postfix "$W/postfix-data"

  # ------------------------------------------------------------ test CA
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=remora test CA" -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:mail.%s\nextendedKeyUsage=serverAuth\n' "$DOMAIN" > "$T/ext"
  openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
    -days 30 -extfile "$T/ext" -out "$T/server.pem" 2>/dev/null
  # a second CA that signed nothing here: the "wrong CA" test case
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=unrelated CA" -keyout "$T/other-ca.key" -out "$T/other-ca.pem" 2>/dev/null
  chmod 644 "$T"/*.pem
  chmod 640 "$T/server.key"
  chgrp dovecot "$T/server.key"

  # ------------------------------------------------------------ postfix queue (dovecot's SASL socket lives in it)
  for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
    install -d -o postfix -g root -m 700 "$Q/$q"
  done
  install -d -o postfix -g postdrop -m 730 "$Q/maildrop"
  install -d -o postfix -g postdrop -m 710 "$Q/public"
  install -d -o root -g root -m 755 "$Q/pid"
  touch "$Q/quick-start"

  # ------------------------------------------------------------ dovecot
  : > "$D/passwd"
  for u in $USERS; do
    extra=""
    [ "$u" = tiny ] && extra="userdb_quota_rule=*:storage=64K quota_rule=*:storage=64K"
    echo "$u:{PLAIN}$u-pw::::::$extra" >> "$D/passwd"
  done
  chmod 640 "$D/passwd"
  chgrp dovecot "$D/passwd"
  local MAILUID MAILGID
  MAILUID=$(id -u $MAILUSER) MAILGID=$(id -g $MAILUSER)
  cat > "$D/dovecot.conf" <<EOF
# standalone config for remora's tests: nothing from /etc/dovecot is read
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
instance_name = remora-dovecot-$IMAP_PORT
log_path = $D/dovecot.log
ssl = yes
ssl_cert = <$T/server.pem
ssl_key = <$T/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes
mail_location = maildir:$W/maildirs/%n/Maildir
mail_uid = $MAILUID
mail_gid = $MAILGID
first_valid_uid = $MAILUID
first_valid_gid = $MAILGID
mail_fsync = never
# many members of one list log in as one user from 127.0.0.1, each with two
# IMAP connections, and every STARTTLS login process stays for its
# connection (the scale benchmark: 2 per member)
mail_max_userip_connections = 1000
default_process_limit = 1000
default_client_limit = 4000
mail_plugins = quota
imap_idle_notify_interval = 2 mins
namespace inbox {
  inbox = yes
  separator = /
  mailbox Junk {
    special_use = \\Junk
    auto = create
  }
  mailbox Trash {
    special_use = \\Trash
    auto = create
  }
}
protocol imap {
  mail_plugins = \$mail_plugins imap_quota
}
plugin {
  quota = maildir:User quota
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN $D/passwd
}
userdb {
  driver = passwd-file
  args = $D/passwd
  default_fields = home=$W/maildirs/%n uid=$MAILUID gid=$MAILGID
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener $Q/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
EOF
  start_dovecot

  # ------------------------------------------------------------ postfix maps + mlmmj lists
  : > "$P/vmailbox"; : > "$P/virtual"; : > "$P/transport"
  for u in $USERS; do echo "$u@$DOMAIN OK" >> "$P/vmailbox"; done
  echo "postmaster@$DOMAIN alice@$DOMAIN" >> "$P/virtual"
  mklist circle alice bob carol
  mklist kit dave erin frank
  # every address of Mailman's domain goes to its LMTP runner (Mailman
  # answers 550 for lists it does not have)
  echo "$LISTS_DOMAIN lmtp:inet:127.0.0.1:$MAILMAN_LMTP_PORT" >> "$P/transport"
  chown -R "$MAILUSER:$MAILUSER" "$W/mlmmj"

  cat > "$P/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $Q
data_directory = $W/postfix-data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $W/postfix.log
maillog_file_prefixes = $W
myhostname = mail.$DOMAIN
mydomain = $DOMAIN
myorigin = $DOMAIN
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination
smtpd_tls_cert_file = $T/server.pem
smtpd_tls_key_file = $T/server.key
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
message_size_limit = 20971520
# nothing may ever leave the machine
relayhost =
default_transport = error:outbound mail disabled in test environment
relay_transport = error:outbound mail disabled in test environment
local_transport = error:local delivery disabled in test environment
disable_dns_lookups = yes
smtp_dns_support_level = disabled
lmtp_host_lookup = native
virtual_mailbox_domains = $DOMAIN
relay_domains = $LISTS_DOMAIN
virtual_mailbox_maps = texthash:$P/vmailbox
virtual_alias_maps = texthash:$P/virtual
virtual_transport = lmtp:unix:$D/run/lmtp
transport_maps = texthash:$P/transport
mlmmj_destination_recipient_limit = 1
recipient_delimiter = +
propagate_unmatched_extensions = canonical, virtual
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
EOF
  cat > "$P/master.cf" <<EOF
# no chroot anywhere (column 5 = n); inet listeners on loopback only
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$SUBM_PORT inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$SMTPS_PORT inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
mlmmj     unix  -       n       n       -       -       pipe
  flags=ORhu user=$MAILUSER argv=/usr/bin/mlmmj-receive -F -L $W/mlmmj/\${nexthop}/
EOF
  # postfix ignores config files changed in the last ~2 s ("cool down"): backdate them
  touch -d "@$(( $(date +%s) - 10 ))" "$P"/*
  start_postfix
  write_env
  echo "svc-mail: up (IMAP $IMAP_PORT/$IMAPS_PORT, SMTP $SMTP_PORT/$SUBM_PORT/$SMTPS_PORT)" >&2
}

write_env() {
  local T=$W/tls D=$W/dovecot
  {
    echo "REMORA_MAIL_SMTP=127.0.0.1:$SMTP_PORT"
    echo "REMORA_MAIL_SUBMISSION=127.0.0.1:$SUBM_PORT"
    echo "REMORA_MAIL_SMTPS=127.0.0.1:$SMTPS_PORT"
    echo "REMORA_MAIL_IMAP=127.0.0.1:$IMAP_PORT"
    echo "REMORA_MAIL_IMAPS=127.0.0.1:$IMAPS_PORT"
    echo "REMORA_MAIL_CA=$T/ca.pem"
    echo "REMORA_MAIL_OTHER_CA=$T/other-ca.pem"
    echo "REMORA_MAIL_DOMAIN=$DOMAIN"
    echo "REMORA_MAIL_LIST=circle@$DOMAIN"
    echo "REMORA_MAIL_LIST_MEMBERS=alice bob carol"
    echo "REMORA_MAIL_KIT_LIST=kit@$DOMAIN"
    echo "REMORA_MAIL_KIT_LIST_MEMBERS=dave erin frank"
    echo "REMORA_MAIL_USERS=$USERS"
    echo "REMORA_MAIL_PASSWORD_SUFFIX=-pw"
    echo "REMORA_MAIL_DOVECOT_CONF=$D/dovecot.conf"
    echo "REMORA_MAIL_DOVECOT_PIDFILE=$W/dovecot.pid"
    echo "REMORA_MAIL_LOCK=$LOCK"
  } >> "$DIR/env"
}

# down waits for a running test binary of the imap package first.
down() {
  wait_tests
  stop
}

case $cmd in
up) up ;;
down) down ;;
# stop and start keep the data: a test stops its private instance and
# starts it again (testenv.Private).
stop) stop ;;
# addlist DIR NAME LOCALPART...: a fresh mlmmj list NAME@example.test whose
# members are LOCALPART@example.test (e.g. alice+m001: folder m001 of alice)
addlist) shift 2; addlist "$@" ;;
start) start_dovecot; start_postfix ;;
*) echo "usage: svc-mail.sh up|down|stop|start DIR | addlist DIR NAME MEMBER..." >&2; exit 2 ;;
esac
