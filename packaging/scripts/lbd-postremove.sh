#!/bin/sh
# dsrlb-lbd post-remove: deb purge, or rpm erase ($1 = 0), removes what a
# failed `lbd detach` may have left under /run/dsrlb.
set -e
case "$1" in
purge | 0) rm -rf /run/dsrlb/lbd-* ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
