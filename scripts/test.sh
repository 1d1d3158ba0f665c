#!/usr/bin/env bash
# Runs every dsrlb test. As root, privileged tests (BPF, network namespaces)
# run too; with CI=true a missing capability fails them instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
export PATH="$PATH:/usr/local/go/bin"
mkdir -p out
go test -count=1 -timeout 20m $(go list ./... | grep -v '/integration$')
# The race detector on the concurrent control-plane code (checks, neighbour
# and reload callbacks meet in the daemon); BPF-heavy packages run above.
go test -count=1 -race -timeout 10m ./lbd/daemon/... ./lbd/health/... ./lbd/internal/... ./lbd/maglev/... ./shared/...
# Short fuzzing of the parsers that read other tools' files (lbd import):
# the seeds run above as tests; this explores beyond them, bounded.
# A count, not a duration: with -fuzztime 10s, Go 1.26's coordinator can
# fail a clean run with "context deadline exceeded" at the deadline under
# load (go.dev/issue/75804, fixed in 1.27); -timeout bounds the time.
# Quiet when it passes; on a failure its whole output says why (a crasher
# is also written to lbd/importer/testdata/fuzz/).
for f in FuzzKeepalived FuzzAloha FuzzIpvsadm; do
	if ! go test -run '^$' -fuzz "^$f\$" -fuzztime 5000x -fuzzminimizetime 1x -timeout 5m ./lbd/importer/ >out/fuzz-$f.log 2>&1; then
		cat out/fuzz-$f.log
		exit 1
	fi
done
# The end-to-end suite prints a one-line-per-scenario summary; go test shows
# a passing package's output only with -v, so keep the log and print it.
rc=0
go test -count=1 -timeout 40m -v ./integration/ >out/integration-test.log 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
	grep -E '^\s*(--- FAIL|FAIL|panic|\S+_test\.go:[0-9]+:)' out/integration-test.log | head -100 || true
fi
sed -n '/^integration summary/,$p' out/integration-test.log
exit "$rc"
