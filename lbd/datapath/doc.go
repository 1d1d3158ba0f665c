// Package datapath owns dsrlb's BPF data plane: it loads the tc program of
// bpf/lb.c, attaches it at ingress of the balancer NIC, pins and adopts its
// state, and programs it from domain types (Service, Backend) so that no
// caller touches a map layout.
//
// # Lifecycle
//
//	d, err := datapath.Open(opts, log) // load, or adopt what a previous lbd pinned
//	err = d.Apply(services)            // the whole desired state, diffed
//	err = d.Attach()                   // tcx; clsact + cls_bpf (direct-action) without it
//	st, err := d.Stats()
//	info, err := d.LookupFlow(flow)    // which backend, and why
//	d.Close()                          // pins stay: forwarding continues
//	d.Remove()                         // detach, unpin, close
//
// Apply before Attach: after an adopt the new program shares the pinned
// maps, so forwarding is continuous; after a fresh load it forwards from the
// first packet. Attach updates a pinned tcx link in place (one atomic
// program swap); the clsact fallback replaces the filter.
//
// # Maps (bpf/lib/maps.h; layouts in bpf/lib/common.h, generated into Go by bpf2go)
//
//   - lb_services (hash): (vip, proto, port) -> (service id, scheduler). Port 0
//     is the VIP's all-ports service, looked up when the exact port misses.
//   - lb_backends (array): backend id -> MAC, state, cookie, owner, address.
//     Id 0 is never used. The cookie changes whenever an id is reassigned.
//   - lb_maglev, lb_rr (array of maps): service id -> the service's table,
//     an inner array whose slot 0 holds its size n and slots 1..n backend
//     ids; lb_rr only for roundrobin services. lb_rr_next (array): the
//     round-robin position of each service.
//   - lb_ct4, lb_conntrack (LRU hashes): client->VIP 5-tuple -> backend id,
//     cookie, last seen, TCP state (CTState). IPv4 flows are in lb_ct4 under
//     a 16-byte key (a hit hashes and compares 16 bytes, not 40), the others
//     in lb_conntrack under lb_flow; each has balancer.conntrack.size
//     entries. Go reads both as one table (ctmaps.go). lb_ct_stats (per-CPU array, one
//     entry): entries inserted, renewed in place, dropped (ConntrackStats).
//   - lb_frags (LRU hash): (client, VIP, proto, IP id) -> the ports the
//     datagram's first fragment carried.
//   - lb_vip_filter (array): one bit per folded destination address (vipBit),
//     set for every VIP; a clear bit means "no VIP", before any hash lookup.
//   - lb_clock (per-CPU array): the coarse clock cached per jiffy.
//   - lb_ct_recent (array of 64-byte values, each 32 two-byte slots; four
//     slots per conntrack entry, 8 MiB for 1,048,576 entries; not pinned):
//     per hash of an IPv4 flow, when an lb_ct4 entry of it was last written
//     and when a SYN of it last left a pending choice (~17 s units). A SYN
//     whose entry time is older than any standing entry lives skips the LRU
//     lookup, one whose pending time is older than a pending choice lives
//     skips reading its flow cache slot; a program loaded onto an earlier
//     program's conntrack looks every SYN up for the first timeout plus
//     two ticks (lb_recent_since_ns; the earlier program may write entries
//     until this one is attached). A refresh of an entry marks its slot only when
//     it leaves the tick of the entry's last write (that write marked it),
//     so a busy flow writes the line once a tick, not once a second; on an
//     earlier program's maps every refresh marks for the longest timeout
//     plus two ticks (lb_recent_due). Packing the slots matters: an array rounds each
//     value up to 8 bytes (one-byte values took 32 MiB), and a slot never
//     straddles two cache lines. A pending mark counts for 86-103 s (60 s
//     closing timeout): above roughly slots / 100 s new SYNs a second
//     (41,000-49,000 with 4 Mi slots) most are set and SYNs read their flow
//     cache slot again.
//   - lb_flow_cache (array, 8,192 entries per CPU, not pinned; mmapable, like
//     lb_ct_recent, only so that its values start on a page and no entry
//     spans two cache lines): copies of established IPv4
//     lb_ct4 entries, and the pending choices of SYNs tracked late (below),
//     so a busy flow's packets skip the LRU lookup; a copy is
//     trusted for at most the 1 s refresh interval and only under the
//     current generation (lb_config.ct_gen, bumped by invalidateFlowCache
//     after Go deletes or writes entries, plus the program's own counter).
//     A hit is answered by a compact path tried before the parser
//     (bpf/lib/fast.h, which also lets an IPv4 TCP packet for no VIP
//     continue), with the full path's verdict and counters: its shorter
//     code is what a busy CPU keeps in cache.
//   - lb_cfg (array, one entry): timeouts, table size, interface MAC, ABI.
//     Settings live in a map, not in .rodata, because globals are not pinned.
//   - lb_svc_stats, lb_be_stats, lb_global_stats (per-CPU arrays): counters
//     per service id, backend id and verdict reason.
//
// # Invariants
//
//   - A table only names backends in state up with a positive weight, and only
//     after their entry in lb_backends is written. Apply builds a new inner
//     map aside, freezes it, and swaps it in with an update of the outer map:
//     the program never reads a half-written table, and its size travels with
//     it. Backends leaving "up" are marked, and removed ones freed, only after
//     the switch.
//   - A backend's state is one byte, so Go flips it atomically. Its MAC is
//     six bytes written in place: a packet racing a MAC change (neighbour
//     moved) could see a mix of both. MAC changes are rare and such a frame
//     is lost like any frame sent during a neighbour change; no table or id
//     is ever read half-written.
//   - Service and backend ids are stable across Apply and across restarts
//     (services are matched by their keys, backends by address within their
//     service), so conntrack entries stay meaningful. A conntrack entry is
//     honoured only if its backend slot still has the same cookie and is up or
//     draining; otherwise it is deleted and the flow rescheduled. So a
//     tracked flow stays on its backend even if its port moves to another
//     service, until that backend is removed or down.
//   - A valid conntrack entry decides without a service lookup (one hash
//     lookup per tracked packet); the backend names its service. So when
//     Apply removes a (vip, proto, port), it deletes the entries of flows no
//     service takes any more (purgeUnserved; a walk, only then). No entry is
//     created for such a flow afterwards: creating one needs the service.
//   - The VIP filter has no false negatives: Apply sets new VIPs' bits before
//     writing their keys and clears bits only after deleting keys.
//   - The program drops one kind of packet only: on the path of packets for
//     no VIP, TCP to a check port (CheckPortMin..CheckPortMax, the C enum
//     lb_check_port, shared with lbd/health) whose source address and port
//     are a service's (drop_check_reply). Those answer lbd's DSR-path checks;
//     lbd's packet socket got them before tc ingress, and the stack, with
//     no socket for them, would send a RST toward the VIP (docs/health-dsr.md).
//     Everything else not redirected continues.
//   - A pinned lb_global_stats with fewer entries than there are reasons (an
//     older lbd's) is replaced on adoption (counters restart, nothing else
//     does); readers of it see the reasons it lacks as zero. An Open that
//     then refuses the rest pins the old counters again.
//   - When entries are created. An IPv4 TCP flow of a maglev or source
//     service is tracked from its second packet, not its SYN. The SYN
//     looks its entry up read-only (unless lb_ct_recent proves there is
//     none that stands): one that stands (valid, not closing: a spoofed
//     SYN, or a client reusing ports the balancer never saw closed) keeps
//     the flow, SYN included, as before. Otherwise the SYN
//     gets the consistent choice and leaves it pending in this CPU's slot
//     of lb_flow_cache (under Go's generation only: the program's own
//     bumps retire copies, not pending choices; a retransmitted SYN
//     finding it keeps it, and is no new flow; a SYN reads its slot only
//     if lb_ct_recent says a SYN of its hash may have left one); the
//     handshake's ACK on that CPU inserts the entry with the SYN's backend
//     (even if the table changed meanwhile, as long as that backend is up
//     or draining), over
//     a closing, closed or expired entry in place (ports reused: counted
//     renewed). A RST, an ICMP error or a fragment after the SYN follows
//     the pending choice and tracks nothing. A later packet that finds neither
//     a pending choice nor an entry (another CPU, a slot taken by another
//     flow, a Go write to conntrack or a removed service key: a new cache
//     generation, an evicted entry) gets the consistent choice of the
//     current table and an unconfirmed entry of it (syn seen, or closing
//     for a FIN; a RST: none): stray or spoofed ACKs count as inactive and
//     live the closing timeout, and the flow's next ACK makes it
//     established (so does a real connection's first data when its
//     handshake ACK reached another CPU than its SYN). So a SYN flood writes nothing to the shared LRU (an ACK
//     flood does, as a SYN flood did before), and a TCP flow still gets an
//     entry from its first packet after the SYN. The cost: a table change
//     between a SYN and its ACK moves the ACK of a flow whose pending choice
//     is gone, when the change moved that flow (1/N of them). Round-robin
//     services (the choice cannot be recomputed), IPv6 flows (no flow
//     cache) and UDP are tracked from the first packet (a SYN without ACK,
//     any UDP packet), and their TCP packets without an entry use the
//     Maglev table and create nothing.
//   - Hashing is jhash2 with a fixed seed over the 16-byte (IPv4-mapped)
//     addresses, ports and protocol (HashFlow, HashSource; Slot is the Go
//     model): two balancers with the same configuration agree.
//
// # Applying at scale: why this design
//
// Measured before it (issue 14): 1,000 services took 30 s to program, at
// ~30 ms per service. Two costs, both per table: an update of an array of
// maps from user space waits for an RCU grace period (synchronize_rcu in
// maybe_wait_bpf_programs, ~12 ms on this 2-vCPU VM, and lbd also deleted
// every non-roundrobin service's lb_rr entry, a second wait), and filling
// a 65,537-slot table by batch update costs ~30 ms of kernel time (one
// element update per slot). What Apply does instead:
//
//   - Tables sized per service (maglev.TableSize): the first step of a
//     ladder of primes (251, 509, 1,021, ... roughly doubling) of at least
//     100 slots per backend listed, bounded by balancer.maglev_table_size.
//     1,000 services of 3 backends take 509 slots each, not 65,537. The size
//     counts listed backends whatever their state, so a health change never
//     resizes (and so never reshuffles) a table; the ladder keeps the size
//     while backends come and go within a step. Inner maps of different
//     sizes need BPF_F_INNER_MAP on the template (kernel >= 5.10); the
//     program then finds n in slot 0 of the table itself, so size and slots
//     switch together in the one update that swaps the table.
//   - Tables are BPF_F_MMAPABLE and filled through a memory mapping: one
//     copy however large (65,537 slots: 0.2 ms instead of 30 ms). They are
//     created without BTF (loading it per map was two thirds of the
//     creation cost), unmapped, then frozen: no one writes a live table.
//     They are built (Maglev population) and created on every CPU at once,
//     before anything the program reads changes.
//   - One batch update per outer map switches every changed table. Since
//     kernel 6.8 a batch update of an array of maps waits for one grace
//     period in all; older kernels wait per entry, as a Put does. Services
//     without a usable backend get a shared empty table (n = 0) in the same
//     batch instead of a deletion, which would wait once more each.
//   - A diff against the previous state: Apply compares each service with
//     the mirror of what it last wrote (backend values, a fingerprint of the
//     table population, key owners) and writes only what changed. Backends,
//     counters and keys are written by batch too. A health flap rewrites its
//     service's table and one backend entry; an unchanged Apply makes no
//     kernel call. LastApply reports the counts.
//
// Alternatives weighed: Katran's flat array of all rings with a per-service
// generation flip avoids map-in-map waits entirely, but fixes memory at
// services x the largest ring and needs an allocator for rings of
// different sizes; a hash of maps gives nothing an array of maps does not
// here.
//
// Atomicity. Apply is a transaction in four undoable steps: reset the
// counters of fresh ids, write new and changed backends (a backend leaving
// "up" stays up), switch the tables, write and delete service keys. If a
// step fails, including a batch the kernel stopped midway (it reports how
// many entries it applied), the entries applied are restored from what
// they held (the previous tables are kept open for this), fresh backends
// are zeroed, keys get their previous values: the previous state keeps
// serving, and the Go mirror is re-read from the maps. Only then are
// backends leaving "up" marked and removed ones freed; a failure there
// leaves the new state serving with leftovers the next Apply retires.
// Per service, backends and table switch together: a service's table is
// switched only after its backends are written, and no backend it names
// leaves before the switch. Across services the switch is one batch, but a
// packet belongs to one service, so it sees one service's old or new state.
//
// # Decisions
//
//   - Fragments: the first fragment of a datagram (IPv4 offset 0 with MF,
//     IPv6 fragment header with offset 0 and M) carries the TCP/UDP header;
//     its ports are recorded in lb_frags under (client, VIP, proto, IP id)
//     and later fragments take them from there (as Cilium does). Every
//     fragment is then scheduled as a packet of the datagram's flow: same
//     service (explicit ports included), same conntrack entry, so the same
//     backend as the flow's unfragmented packets. A later fragment that
//     arrives before its first finds no entry and passes to the host
//     (pass_fragment): that datagram is lost, as on any path losing a
//     fragment, and the client's retransmission normally arrives in order;
//     guessing a backend would split the datagram between two hosts.
//   - TCP state from the client's half, as IPVS for direct routing: SYN ->
//     syn seen, its ACK -> established, client FIN -> closing, RST ->
//     closed. Established entries live for the TCP timeout and count as
//     active; the others live for Options.TCPClosingTimeout and count as
//     inactive (ActiveFlows). A SYN finding a closing or closed entry is a
//     new connection reusing the ports: it is scheduled afresh (so a
//     drained backend gets none), its entry renewed in place (a late-tracked
//     SYN does not look: its ACK replaces the entry).
//   - Time: entries carry CLOCK_MONOTONIC_COARSE, read once per jiffy and
//     CPU (lb_clock); ages are signed, since one CPU's cached clock may be a
//     tick ahead of another's. A stale entry is renewed in place by a new
//     flow of the same 5-tuple (no delete and insert), else deleted.
//   - ICMP: echo and other non-errors to a VIP pass to the host. ICMP errors
//     (v4 destination unreachable incl. fragmentation needed, time exceeded,
//     parameter problem; v6 unreachable, packet too big, time exceeded,
//     parameter problem) that quote a reply of one of our flows (VIP:port ->
//     client) go to that flow's backend (conntrack, else Maglev), so path MTU
//     discovery works through DSR.
//   - No usable backend: the packet passes to the host, which holds the VIP
//     and answers with a TCP reset or ICMP port unreachable: clients fail fast
//     instead of timing out. Counted per service (NoBackend) and globally.
//   - Malformed or truncated frames pass untouched (the host drops them as it
//     would without us) and are counted; every read is bounds-checked by
//     bpf_skb_load_bytes and by the IP length, so nothing is read out of
//     bounds and nothing malformed is redirected.
//   - VLAN: the outer tag is in skb metadata at tc ingress and stays there on
//     redirect; one tag in the bytes (QinQ inner tag, or no stripping) is
//     parsed; a second is "unsupported".
//   - Incompatible pinned maps (other layout, ABI, table size bound) fail Open with
//     ErrIncompatible, or with Options.ReplaceIncompatible are replaced by
//     fresh ones: tracked flows then fall back to the Maglev table. The live
//     pins are not touched before this program forwards (swap.go): Open pins
//     the fresh maps under PinPath/next; Attach renames that to
//     PinPath/swapping just before the attach syscall and, once attached,
//     moves each pin over the old one (names this build lacks are removed).
//     Unpin (a start failing before Attach) removes next/, so the old program
//     keeps forwarding with its maps still pinned (lbd status reads them, the
//     next start finds them). Open settles what a killed start left: next/ is
//     removed, swapping/ moved in place. Residual windows: killed between
//     that rename and the attach syscall, after a failed attach syscall and
//     before the rename back, or (tcx, no link pinned before) after the
//     attach and before the link's pin (the unpinned link dies with the
//     process), the old program still forwards while the next Open moves
//     the dead start's maps over its pins; killed after the attach and
//     before the moves, lbd status reads the old maps until the next Open.
//     A replacing start over an old plane found detached removes it on
//     failure (no program uses it).
//     A refused load removes the pins it created for maps the set lacked.
package datapath
