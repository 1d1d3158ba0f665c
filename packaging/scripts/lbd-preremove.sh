#!/bin/sh
# dsrlb-lbd pre-remove, for deb (remove | upgrade | deconfigure) and rpm
# ($1 = 0 erase, 1 upgrade). On removal lbd is stopped and its data plane
# detached: a forwarding program without its health checks would keep
# sending flows to dead backends. On upgrade nothing happens: the new lbd
# adopts the pinned data plane.
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now lbd.service >/dev/null 2>&1 || true
fi
if command -v lbd >/dev/null 2>&1; then
	lbd detach --config /etc/dsrlb/dsrlb.yaml || echo "dsrlb-lbd: lbd detach failed; run it by hand before reinstalling" >&2
fi
exit 0
