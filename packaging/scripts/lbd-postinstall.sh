#!/bin/sh
# dsrlb-lbd post-install, for deb (configure [old-version]) and rpm ($1 = 1
# install, 2 upgrade). A fresh install is not enabled nor started: the
# example configuration names eth0 and documentation VIPs, and taking a VIP
# on a production segment by accident would steal its traffic. An upgrade
# restarts a running lbd: its data plane stays pinned, so traffic continues.
set -e
upgrade=no
case "$1" in
configure) [ -n "$2" ] && upgrade=yes ;;
2) upgrade=yes ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = yes ]; then
		systemctl try-restart lbd.service || true
	fi
fi
exit 0
