#!/usr/bin/env bash
# gen.sh regenerates the adapter wire code from adapter.proto. It is
# idempotent: run it (or `make proto`) and commit the result; CI expects no diff.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

if ! command -v protoc >/dev/null 2>&1; then
	echo "gen.sh: installing protoc (Debian protobuf-compiler)" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq protobuf-compiler
fi

have() { # have TOOL VERSION: TOOL is installed at exactly VERSION
	command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qw "${2#v}"
}
if ! have protoc-gen-go "$PROTOC_GEN_GO_VERSION"; then
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if ! have protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"; then
	go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

# The generated files name the protoc version; the committed ones were made
# with Debian 12's protoc 3.21.12. Another version gives a one-line diff.
if ! protoc --version | grep -qw 3.21.12; then
	echo "gen.sh: warning: $(protoc --version), not 3.21.12: the version comment will differ" >&2
fi

cd "$dir"
protoc -I . \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	adapter.proto
