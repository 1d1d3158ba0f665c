// Command hostprep is the dsrlb backend agent: it puts the VIPs on loopback
// and keeps the host silent on ARP for them, so the balancer can hand it
// frames for the VIPs (Direct Server Return).
package main

import (
	"os"

	"github.com/dsrlb/dsrlb/hostprep/internal/cli"
)

// version is stamped at link time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() { os.Exit(cli.Main(version, os.Args[1:], os.Stdout, os.Stderr)) }
