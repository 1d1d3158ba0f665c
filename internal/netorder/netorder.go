// Package netorder converts 16-bit values to network byte order for the
// kernel interfaces that take them in a host integer: the protocol of an
// AF_PACKET socket (socket(2), sockaddr_ll) and a BPF instruction's
// immediate compared with a loaded EtherType.
package netorder

import "math/bits"

// Htons returns v in network byte order, as htons(3) does on the
// little-endian machines dsrlb runs on (bpf2go builds its objects for
// little-endian only).
func Htons(v uint16) uint16 { return bits.ReverseBytes16(v) }
