#!/bin/sh
# dsrlb-hostprep post-remove: deb purge, or rpm erase ($1 = 0), removes its state.
set -e
case "$1" in
purge | 0) rm -f /var/lib/dsrlb/hostprep-state.json ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
