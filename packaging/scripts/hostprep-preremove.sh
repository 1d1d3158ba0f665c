#!/bin/sh
# dsrlb-hostprep pre-remove, for deb (remove | upgrade) and rpm ($1 = 0
# erase, 1 upgrade). On removal hostprep undoes exactly what it did (VIPs
# on lo, sysctls restored to the values it found, its files removed), as
# its state file records; on upgrade nothing changes. It acts when
# hostprep.service was enabled or active, or when the packaged state file
# records changes (a `hostprep apply` run by hand or by cloud-init): once
# the package is gone nothing could undo them. A failed remove fails the
# removal, leaving hostprep installed to finish the job: fix the cause it
# names, then remove the package again.
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
unit=hostprep.service
state=/var/lib/dsrlb/hostprep-state.json
act=no
if [ -f "$state" ]; then act=yes; fi
if systemctl is-enabled --quiet "$unit" 2>/dev/null; then act=yes; fi
if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit"; then act=yes; fi
if [ "$act" = no ]; then exit 0; fi
systemctl disable "$unit" >/dev/null 2>&1 || true
if [ -d /run/systemd/system ]; then
	# RemainAfterExit: stopping only marks it inactive; the VIPs stay until remove.
	systemctl stop "$unit" >/dev/null 2>&1 || true
fi
if ! hostprep remove --state "$state"; then
	echo "dsrlb-hostprep: hostprep remove failed (above): what it could not undo stays recorded in $state; fix the cause, then remove the package again" >&2
	exit 1
fi
exit 0
