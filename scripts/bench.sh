#!/usr/bin/env bash
# Benchmarks behind BENCHMARKS.md (as root on Debian 12; bounded: about
# 4 minutes end to end, 3 minutes control plane). Nothing here is part of
# the test run.
#
#   scripts/bench.sh [e2e|control|scale|all] [dsrlb-bench flags...]
#
# e2e:     integration/cmd/dsrlb-bench in network namespaces: direct path,
#          dsrlb, HAProxy (TCP mode) under wrk with a new connection per
#          request, 64 B and 1 MiB responses, 3 runs of 8 s per cell,
#          medians; in-kernel ns/run of the dsrlb program; lbd's RSS with
#          1,000 services. Every namespace, process and pin is removed at
#          the end, also on Ctrl-C.
# control: go test -bench in lbd/daemon: config -> programmed maps for
#          10/1,000/10,000 backends and 1/100/1,000 services, reload,
#          conntrack map memory.
# scale:   integration/cmd/dsrlb-scale (not part of all): the real lbd in a
#          namespace, exec -> READY=1 and SIGHUP -> READY=1 for 1, 100,
#          1,000 services x 3 servers and 100 x 100; lbd RSS and map
#          memlock (bpftool). About 2 minutes; flags go to dsrlb-scale.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
[ $# -gt 0 ] && shift
case "$what" in e2e|control|scale|all) ;; *) echo "usage: scripts/bench.sh [e2e|control|scale|all] [dsrlb-bench flags]" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespaces, bpffs, kernel.bpf_stats_enabled)" >&2; exit 1; }
scripts/setup-debian.sh
export PATH="$PATH:/usr/local/go/bin"
bin=$(mktemp -d /tmp/dsrlb-bench-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) CPUs, kernel $(uname -r), $(go version | cut -d' ' -f3)"
if [ "$what" = scale ]; then
	go build -o "$bin/" ./lbd ./integration/cmd/dsrlb-scale
	"$bin/dsrlb-scale" -bin "$bin" "$@"
	exit 0
fi
if [ "$what" != control ]; then
	go build -o "$bin/" ./lbd ./hostprep ./integration/cmd/dsrlb-testsrv ./integration/cmd/dsrlb-bench
	"$bin/dsrlb-bench" -bin "$bin" "$@"
fi
if [ "$what" != e2e ]; then
	go test ./lbd/daemon -run '^$' -bench . -benchtime 3x -timeout 15m
fi
