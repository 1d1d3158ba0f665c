// Command lbd is the dsrlb balancer daemon: it attaches the DSR redirector
// to the balancer's NIC, programs it from the configuration and keeps only
// healthy backends in rotation.
package main

import (
	"os"

	"github.com/dsrlb/dsrlb/lbd/internal/cli"
)

// version is stamped at link time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() { os.Exit(cli.Main(version, os.Args[1:], os.Stdout, os.Stderr)) }
