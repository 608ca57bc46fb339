#!/usr/bin/env bash
# svc-git.sh up DIR | down DIR — real git remotes for the git adapter's tests,
# on 127.0.0.1 only, all state under DIR/git, every daemon stopped by pid.
#
#   git daemon  git://127.0.0.1:19418/NAME.git  upload-pack + receive-pack,
#                                               serves DIR/git/repos (--export-all)
#   sshd        ssh://ME@127.0.0.1:19419/ABS/PATH.git
#               per-run ed25519 host key pinned in DIR/git/ssh/known_hosts,
#               ed25519 client key (restricted: no pty, no forwarding)
#
# Tests create their own bare repository per test:
#   git init --bare "$REMORA_GIT_ROOT/NAME.git"
# and reach it as $REMORA_GIT_DAEMON_URL/NAME.git, $REMORA_GIT_SSH_URL/NAME.git
# or file://$REMORA_GIT_ROOT/NAME.git.
#
# Appends to DIR/env: REMORA_GIT_ROOT, REMORA_GIT_DAEMON_URL, REMORA_GIT_SSH_URL,
# REMORA_GIT_SSH_KEY (client private key file), REMORA_GIT_KNOWN_HOSTS,
# REMORA_GIT_OTHER_KNOWN_HOSTS (a known_hosts with a wrong key for the same host).
# Recipe and gotchas: ../shared/testenv/NOTES.md §3 (git-daemon directly for
# the right pid, /run/sshd, StrictModes no under /tmp, UsePAM no).
set -euo pipefail

cmd=${1:?usage: svc-git.sh up|down DIR}
DIR=${2:-/tmp/remora-testenv}
DAEMON_PORT=${REMORA_GIT_DAEMON_PORT:-19418}
SSH_PORT=${REMORA_GIT_SSH_PORT:-19419}

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
W=$DIR/git
R=$W/repos
S=$W/ssh

alive() { [ -s "$W/$1" ] && kill -0 "$(cat "$W/$1")" 2>/dev/null; }

stop() {
  local pids=() f pid
  for f in git-daemon.pid sshd.pid; do
    [ -s "$W/$f" ] || continue
    pid=$(cat "$W/$f")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$W/$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then echo "svc-git: $pid still alive, SIGKILL" >&2; kill -KILL "$pid"; fi
  done
}

wait_port() { # PORT NAME LOG PIDFILE
  for _ in $(seq 200); do
    if ! kill -0 "$(cat "$4")" 2>/dev/null; then
      echo "svc-git: $2 exited (port 127.0.0.1:$1 taken by another instance?); log:" >&2
      tail -20 "$3" >&2
      rm -f "$4"
      return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "svc-git: $2 not listening on 127.0.0.1:$1; log:" >&2
  tail -20 "$3" >&2
  return 1
}

install_pkgs() {
  command -v git >/dev/null || need=1
  [ -x /usr/sbin/sshd ] || need=1
  [ "${need:-0}" = 1 ] || return 0
  echo "svc-git: installing git, openssh-server (~10 s)" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then # never let the packages start system daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends git openssh-server openssh-client >/dev/null
}

up() {
  install_pkgs
  mkdir -p "$R" "$S"
  local gitcore
  gitcore=$(git --exec-path)

  if ! alive git-daemon.pid; then
    # git-daemon itself (not the "git daemon" wrapper) so that $! is its pid;
    # no --detach (it would log to syslog)
    nohup "$gitcore/git-daemon" --reuseaddr --listen=127.0.0.1 --port="$DAEMON_PORT" \
      --base-path="$R" --export-all --enable=receive-pack --informative-errors \
      </dev/null >"$W/git-daemon.log" 2>&1 &
    echo $! > "$W/git-daemon.pid"
    wait_port "$DAEMON_PORT" "git daemon" "$W/git-daemon.log" "$W/git-daemon.pid"
  fi

  if ! alive sshd.pid; then
    [ -f "$S/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C remora-testhost -f "$S/host_ed25519"
    [ -f "$S/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C remora-testclient -f "$S/client_ed25519"
    [ -f "$S/other_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C remora-otherhost -f "$S/other_ed25519"
    echo "restrict $(cat "$S/client_ed25519.pub")" > "$S/authorized_keys"
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$S/host_ed25519.pub")" > "$S/known_hosts"
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$S/other_ed25519.pub")" > "$S/other_known_hosts"
    local me
    me=$(id -un)
    cat > "$S/sshd_config" <<CONF
ListenAddress 127.0.0.1:$SSH_PORT
HostKey $S/host_ed25519
PidFile $S/sshd.pidfile
AuthorizedKeysFile $S/authorized_keys
# keys live below DIR, which may be under world-writable /tmp
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $me
PrintMotd no
MaxStartups 100:30:200
LogLevel INFO
CONF
    # sshd running as root needs its privilege-separation dir
    if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
    # -D foreground (& + $! is the pid), -e logs to stderr; sshd re-execs by absolute path
    nohup /usr/sbin/sshd -D -e -f "$S/sshd_config" </dev/null >"$W/sshd.log" 2>&1 &
    echo $! > "$W/sshd.pid"
    wait_port "$SSH_PORT" sshd "$W/sshd.log" "$W/sshd.pid"
  fi

  {
    echo "REMORA_GIT_ROOT=$R"
    echo "REMORA_GIT_DAEMON_URL=git://127.0.0.1:$DAEMON_PORT"
    echo "REMORA_GIT_SSH_URL=ssh://$(id -un)@127.0.0.1:$SSH_PORT$R"
    echo "REMORA_GIT_SSH_KEY=$S/client_ed25519"
    echo "REMORA_GIT_KNOWN_HOSTS=$S/known_hosts"
    echo "REMORA_GIT_OTHER_KNOWN_HOSTS=$S/other_known_hosts"
  } >> "$DIR/env"
  echo "svc-git: up (git daemon $DAEMON_PORT, sshd $SSH_PORT, repos in $R)" >&2
}

case $cmd in
up) up ;;
down) stop ;;
*) echo "usage: svc-git.sh up|down DIR" >&2; exit 2 ;;
esac
