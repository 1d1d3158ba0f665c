#!/bin/sh
# dsrlb-hostprep post-install, for deb (configure [old-version]) and rpm
# ($1 = 1 install, 2 upgrade). hostprep.service is not enabled on a fresh
# install: the configuration must be written first (cloud-init does both,
# see /usr/share/doc/dsrlb-hostprep/cloud-init-user-data.yaml).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
