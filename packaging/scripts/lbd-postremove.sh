#!/bin/sh
# dsrlb-lbd post-remove: `lbd detach` in pre-remove took the packaged
# instance's files under /run/dsrlb; other instances' files are theirs.
# The directory goes when it is left empty.
set -e
case "$1" in
purge | remove | 0) rmdir /run/dsrlb 2>/dev/null || true ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
