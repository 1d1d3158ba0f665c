#!/bin/sh
# dsrlb-hostprep pre-remove, for deb (remove | upgrade) and rpm ($1 = 0
# erase, 1 upgrade). On removal hostprep undoes exactly what it did (VIPs
# on lo, sysctls restored to the values it found, its files removed); on
# upgrade nothing changes.
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl disable hostprep.service >/dev/null 2>&1 || true
fi
if command -v hostprep >/dev/null 2>&1; then
	hostprep remove || echo "dsrlb-hostprep: hostprep remove failed; check the VIPs on lo and /etc/sysctl.d by hand" >&2
fi
exit 0
