#!/bin/sh
# dsrlb-common post-remove: on deb purge or rpm erase, remove the state
# directory once the other dsrlb packages have left it empty.
set -e
case "$1" in
purge | 0) rmdir /var/lib/dsrlb 2>/dev/null || true ;;
esac
exit 0
