#!/bin/sh
# dsrlb-lbd post-remove: deb purge, or rpm erase ($1 = 0), removes lbd's state.
set -e
case "$1" in
purge | 0) rm -rf /var/lib/dsrlb/lbd ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
