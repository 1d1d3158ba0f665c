#!/usr/bin/env bash
# The README's "run" command. Builds lbd and hostprep and validates the
# shipped example configuration with both. (The full demo — a client,
# the balancer and three backends in network namespaces — replaces this
# once the data plane and lbd land: see issues 4-6.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
export PATH="$PATH:/usr/local/go/bin"
mkdir -p out
go build -o out/lbd ./lbd
go build -o out/hostprep ./hostprep
out/lbd --version
out/hostprep --version
out/lbd validate --config packaging/examples/dsrlb.yaml
out/hostprep validate --config packaging/examples/dsrlb.yaml
