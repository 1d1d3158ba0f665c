#!/usr/bin/env bash
# Installs everything dsrlb's build and tests need on Debian 12 (run as root).
# One list, used by README's commands and by CI, so a fresh machine and
# CI cannot disagree.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
	clang llvm libbpf-dev bpftool   # BPF compile (bpf2go) and inspection
	iproute2 iputils-ping tcpdump   # namespaces, veth, bridges, captures
	procps util-linux               # sysctl in test namespaces; nsenter, setpriv
	ca-certificates git
	rpm lintian cloud-init systemd  # packaging tests: rpm -qp, lintian, cloud-init schema, systemd-analyze
	wrk haproxy iperf3              # scripts/bench.sh: load generator, HAProxy TCP-mode baseline, raw TCP throughput
	bird2 keepalived                # scale-out tests: BGP/ECMP router (integration/ecmp_test.go), VRRP active/standby
	prometheus                      # promtool: packaging/monitoring tests check the alert rules and dashboard queries
	chromium                        # integration/statuspage_test.go loads lbd's status page headless
	debootstrap systemd-container   # real-systemd scenarios: a Debian 12 tree booted with systemd-nspawn (integration/systemd_test.go)
	nginx-light unbound             # check types against real servers: https backend, DNS server (integration/health_types_test.go)
	dpkg-dev                        # dpkg-scanpackages: the local apt repository of the cloud-init scenario (integration/cloudinit_test.go)
)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "setup-debian: Go >= 1.26 is required (https://go.dev/doc/install), /usr/local/go/bin/go not found" >&2; exit 1; }
go mod download
go mod download -modfile=tools/go.mod
