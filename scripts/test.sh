#!/usr/bin/env bash
# Runs every dsrlb test. As root, privileged tests (BPF, network namespaces)
# run too; with CI=true a missing capability fails them instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
export PATH="$PATH:/usr/local/go/bin"
go test -count=1 -timeout 20m ./...
