#!/bin/sh
# dsrlb-lbd pre-remove, for deb (remove | upgrade | deconfigure) and rpm
# ($1 = 0 erase, 1 upgrade). On removal the packaged lbd.service is stopped
# and its data plane detached: a forwarding program without its health
# checks would keep sending flows to dead backends. Only that instance:
# nothing happens when lbd.service was neither enabled nor active (an lbd
# started by hand, under another configuration or pin path, is its
# owner's), and the pin path detached is the one the service runs with
# (its running copy under /run/dsrlb), not whatever the file names now.
# A failed detach fails the removal: run `lbd detach` by hand, then remove
# again. On upgrade nothing happens: the new lbd adopts the data plane.
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
unit=lbd.service
cfg=/etc/dsrlb/dsrlb.yaml
active=no
enabled=no
if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit"; then
	active=yes
	pid=$(systemctl show --property MainPID --value "$unit")
	for f in /run/dsrlb/lbd-*.pid; do
		if [ -f "$f" ] && [ "$(cat "$f")" = "$pid" ] && [ -f "${f%.pid}.running.yaml" ]; then
			cfg=${f%.pid}.running.yaml
		fi
	done
fi
if systemctl is-enabled --quiet "$unit" 2>/dev/null; then enabled=yes; fi
if [ "$active" = no ] && [ "$enabled" = no ]; then
	exit 0
fi
if [ -d /run/systemd/system ]; then
	systemctl disable --now "$unit" >/dev/null 2>&1 || true
else
	systemctl disable "$unit" >/dev/null 2>&1 || true
fi
if ! lbd detach --config "$cfg"; then
	echo "dsrlb-lbd: lbd detach --config $cfg failed (above): the data plane still forwards; fix the cause, run it by hand, then remove the package again" >&2
	exit 1
fi
exit 0
