package cli

import "github.com/dsrlb/dsrlb/shared/cmdutil"

// manSections are the FILES, SIGNALS and EXIT STATUS sections of
// hostprep's man pages (cobra writes the rest from the command tree).
func manSections() cmdutil.ManSections {
	return cmdutil.ManSections{
		ExitStatus: "`0`: success (apply: the host matches the plan, changed or not).\n\n" +
			"`1`: the command failed: an invalid configuration, no VIP of the file is this host's, a VIP found on a NIC, missing privileges (CAP_NET_ADMIN), or the reason printed. A failure midway through apply or remove rolls back what that run changed.\n\n" +
			"`2`: wrong usage: an unknown command or flag.",
		Signals: "hostprep handles no signal specially. A run interrupted by a signal may leave part of its changes; the next hostprep apply completes them, hostprep remove undoes them.",
		Files: "`/etc/dsrlb/dsrlb.yaml`: the configuration (--config), see dsrlb.yaml(5).\n\n" +
			"`/etc/sysctl.d/99-zz-dsrlb-arp.conf`: arp_ignore=1 and arp_announce=2 for the next boot; sorts after Debian's 99-sysctl.conf.\n\n" +
			"`/etc/systemd/network/05-dsrlb-lo.network`: the VIPs on lo for systemd-networkd; sorts before the usual 10-* files.\n\n" +
			"`/var/lib/dsrlb/hostprep-state.json`: what hostprep added and the values it found before its first change (--state), read by hostprep remove.\n\n" +
			"`/usr/lib/systemd/system/hostprep.service`: the oneshot unit that applies at every boot.\n\n" +
			"With --root DIR, every path above is under DIR.",
		Commands: map[string]cmdutil.ManSections{
			"hostprep check": {
				ExitStatus: "`0`: the host matches the plan.\n\n" +
					"`1`: the host differs from the plan (each difference is printed), or the check could not run (the reason printed).\n\n" +
					"`2`: wrong usage.",
			},
			"hostprep validate": {
				ExitStatus: "`0`: the configuration is valid; a one-line summary is printed.\n\n" +
					"`1`: the configuration is not valid; every error is printed as file:line: field: what is wrong.\n\n" +
					"`2`: wrong usage.",
			},
		},
	}
}
