#!/usr/bin/env bash
# The README's "run" command (as root on Debian 12). Builds lbd and hostprep,
# validates the shipped example configuration with both, then runs the
# end-to-end demo in network namespaces (integration/cmd/dsrlb-demo): a
# client, a balancer and three backends on a bridge; backends prepared by
# hostprep; lbd started with an example configuration; requests sent to
# the VIP with the backend that answered each; `lbd status`; everything
# removed at the end (also on Ctrl-C). The host's own network is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
export PATH="$PATH:/usr/local/go/bin"
mkdir -p out
go build -o out/ ./lbd ./hostprep ./integration/cmd/dsrlb-testsrv ./integration/cmd/dsrlb-demo
out/lbd --version
out/hostprep --version
out/lbd validate --config packaging/examples/dsrlb.yaml
out/hostprep validate --config packaging/examples/dsrlb.yaml
out/dsrlb-demo -bin out
