#!/usr/bin/env bash
# relay-list.sh — rebuild and re-sign the built-in list of volunteer relays
# (core/relaylist/relays.bundle). Run by .github/workflows/relay-list.yml on
# a schedule; a maintainer can run it by hand too.
#
#   bootstrap/volunteers.csv   peer,addrs — relays volunteers signed up
#   bootstrap/health/*.csv     peer,successes,failures — dial outcomes
#                              recorded by nodes (dead relays are dropped,
#                              the healthiest go first)
#   RELAY_SIGNING_KEY          the CI signing key (minisign, secret)
#   bootstrap/delegation       the root's delegation of that key (and
#                              delegation.minisig), made offline with
#                              `remora bootstrap delegate`
#
# The sequence is the current Unix time, so every build supersedes the last
# and nodes refuse older ones; the list is valid 30 days and re-signed
# weekly, so a node that cannot fetch a new one keeps a valid list for weeks.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RELAY_SIGNING_KEY:?set RELAY_SIGNING_KEY to the CI signing key (minisign secret key text)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(umask 077; printf '%s\n' "$RELAY_SIGNING_KEY" > "$work/signing.key")
go build -o "$work/remora" ./cmd/remora
health=()
for f in bootstrap/health/*.csv; do
  [ -e "$f" ] && health+=(--health "$f")
done
"$work/remora" bootstrap build --seq "$(date +%s)" --valid "${RELAY_LIST_VALID:-720h}" "${health[@]}" \
  --out "$work/relays.csv" bootstrap/volunteers.csv
"$work/remora" bootstrap sign --key "$work/signing.key" --delegation bootstrap/delegation \
  --out core/relaylist/relays.bundle "$work/relays.csv"
"$work/remora" bootstrap verify core/relaylist/relays.bundle
