/* common.h — constants, verdicts, reasons and the key/value layouts shared by
 * every other header and, through bpf2go -type, by the Go package
 * lbd/datapath. Layouts are defined here once; Go never re-declares them.
 *
 * Addresses: every address is 16 bytes. IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d), exactly what Go's netip.Addr.As16 returns, so one key
 * layout and one hash serve both families.
 */
#ifndef LB_COMMON_H
#define LB_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Bump LB_ABI_VERSION when a map layout or the meaning of a field changes:
 * lbd does not adopt pinned maps written by another ABI (lb_config.abi). */
enum lb_abi {
	LB_ABI_VERSION = 4, /* 2: pass_other_host reason, lb_config.last_cookie;
			     * 3: per-service table sizes (size in slot 0),
			     *    lb_ct_entry.state, lb_config.tcp_closing_timeout_ns,
			     *    lb_frags, lb_vip_filter, lb_clock, lb_ct_stats;
			     * 4: IPv4 flows in lb_ct4 (struct lb_ct4_key) */
};

/* Fixed hash seed: two balancers with the same configuration must pick the
 * same backend for a flow, so nothing host- or boot-specific (skb->hash) may
 * enter the hash. */
#define LB_HASH_SEED 0x64737231 /* "dsr1" */

/* Ingress verdicts. Under tcx, TC_ACT_OK would end the chain: traffic that
 * is not ours "continues" (TCX_NEXT == TC_ACT_UNSPEC) so other programs and
 * then the stack see it untouched. Debian's 6.1 headers lack TCX_*. */
#define LB_ACT_CONTINUE TC_ACT_UNSPEC
#define LB_ACT_REDIRECT TC_ACT_REDIRECT
#define LB_ACT_DROP TC_ACT_SHOT

/* Source ports of lbd's DSR-path health checks (lbd/health reads them
 * through bpf2go): above Linux's default ephemeral range (32768-60999), so
 * no kernel socket of the balancer uses them. A TCP segment from a
 * service's VIP:port to one of these ports is a backend's answer to a
 * check; lbd's packet socket has it already (taps run before tc ingress),
 * and the stack must not see it: with a VIP not local on the balancer it
 * would answer with a RST that can reach the backend. */
enum lb_check_port {
	LB_CHECK_PORT_MIN = 61000,
	LB_CHECK_PORT_MAX = 65535,
};

/* Conntrack timestamps are refreshed at most this often, so a busy flow
 * does not write its entry's cache line on every packet. */
#define LB_CT_REFRESH_NS 1000000000ULL

/* Bits of lb_vip_filter: LB_VIP_FILTER_WORDS u64 words. */
#define LB_VIP_FILTER_WORDS 1024
#define LB_VIP_FILTER_BITS (LB_VIP_FILTER_WORDS * 64)

/* Scheduler of a service (lb_service.sched). */
enum lb_sched {
	LB_SCHED_MAGLEV = 0,     /* jhash(5-tuple) into the weighted Maglev table */
	LB_SCHED_ROUNDROBIN = 1, /* next slot of the weighted round-robin table, per new flow */
	LB_SCHED_SOURCE = 2,     /* jhash(client address) into the Maglev table */
};

/* State of a backend slot (lb_backend.state). */
enum lb_backend_state {
	LB_BACKEND_UNUSED = 0, /* free slot: a conntrack entry pointing here is stale */
	LB_BACKEND_UP = 1,     /* takes new and established flows */
	LB_BACKEND_DRAIN = 2,  /* keeps established flows (conntrack), takes no new ones */
	LB_BACKEND_DOWN = 3,   /* takes nothing: its flows are rescheduled */
};

/* Why a packet got its verdict; index of lb_global_stats. */
enum lb_reason {
	LB_REASON_REDIRECT = 0,          /* redirected to a backend (tracked or new flow) */
	LB_REASON_REDIRECT_ICMP = 1,     /* ICMP error about a flow, sent to the flow's backend */
	LB_REASON_REDIRECT_FRAGMENT = 2, /* IP fragment, sent with its datagram's ports (lb_frags) */
	LB_REASON_PASS_NOT_IP = 3,       /* not IPv4/IPv6 (ARP, LLDP…) */
	LB_REASON_PASS_NO_SERVICE = 4,   /* IP, but no service for (vip, proto, port) */
	LB_REASON_PASS_ICMP = 5,         /* ICMP for the host (echo to a VIP, errors about no flow of ours) */
	LB_REASON_PASS_FRAGMENT = 6,     /* fragment of no service, or a later fragment whose first was not seen */
	LB_REASON_PASS_NO_BACKEND = 7,   /* service has no usable backend: the host answers (RST/unreachable) */
	LB_REASON_PASS_MALFORMED = 8,    /* truncated or inconsistent headers */
	LB_REASON_PASS_UNSUPPORTED = 9,  /* valid but not handled: other L4, 2nd VLAN tag, long IPv6 header chain */
	LB_REASON_PASS_OTHER_HOST = 10,  /* frame for another MAC (promiscuous NIC, flooded unicast): not ours */
	LB_REASON_DROP_CHECK_REPLY = 11, /* a backend's answer to a DSR-path check (VIP:port -> check port), taken by lbd's socket */
	LB_REASON_MAX = 12,
};

/* State of a conntrack entry (lb_ct_entry.state), from the client's half
 * of the connection only, as IPVS does for direct routing: the balancer
 * never sees the server's packets. */
enum lb_ct_state {
	LB_CT_ESTABLISHED = 0, /* TCP: ACK after the SYN; UDP: always. "active" */
	LB_CT_SYN_SEEN = 1,    /* TCP SYN seen, handshake ACK not yet. "inactive" */
	LB_CT_CLOSING = 2,     /* client sent FIN. "inactive", closing timeout */
	LB_CT_CLOSED = 3,      /* client sent RST. "inactive", closing timeout */
};

/* A 16-byte address; IPv4 is IPv4-mapped. */
union lb_addr {
	__u8 b[16];
	__be32 w[4];
};

/* The flow as the client sent it (client -> VIP). It is the conntrack key
 * and, read as ten native-endian u32 words, the input of the 5-tuple hash. */
struct lb_flow {
	union lb_addr saddr; /* client address */
	union lb_addr daddr; /* VIP */
	__be16 sport;        /* client port; 0 for fragments */
	__be16 dport;        /* service port; 0 for fragments */
	__u8 proto;          /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];         /* always zero: hashed and compared */
};

/* Key of lb_ct4: an IPv4 flow (both addresses IPv4-mapped in its lb_flow),
 * 16 bytes instead of 40, so the kernel hashes 4 words instead of 10 and
 * compares 16 bytes on a hit. Same fields, same byte order as lb_flow. */
struct lb_ct4_key {
	__be32 saddr; /* client address */
	__be32 daddr; /* VIP */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3]; /* always zero */
};

/* Key of lb_services. port 0 is the service taking every port of its VIP. */
struct lb_service_key {
	union lb_addr vip;
	__be16 port;
	__u8 proto;
	__u8 pad; /* zero */
};

/* Value of lb_services: several keys (ports) may share one service id. */
struct lb_service {
	__u32 id;    /* index into lb_maglev, lb_rr, lb_rr_next, lb_svc_stats */
	__u8 sched;  /* enum lb_sched */
	__u8 pad[3];
};

/* Value of lb_backends, indexed by backend id. */
struct lb_backend {
	__u8 mac[6];        /* destination MAC written into redirected frames */
	__u8 state;         /* enum lb_backend_state; one byte so Go flips it atomically */
	__u8 pad;
	__u32 cookie;       /* changes whenever the slot is reassigned, so a conntrack
	                     * entry can tell "its" backend from a later occupant */
	__u32 service_id;   /* owning service, for Go's bookkeeping and lookups */
	union lb_addr addr; /* backend address, for Go only (not used to forward) */
};

/* Value of lb_conntrack and lb_ct4. */
struct lb_ct_entry {
	__u64 last_seen_ns; /* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC_COARSE) of the last refresh */
	__u32 backend_id;   /* index into lb_backends */
	__u32 cookie;       /* lb_backend.cookie when the flow was scheduled */
	__u8 state;         /* enum lb_ct_state */
	__u8 pad[7];
};

/* Key of lb_frags: what identifies the fragments of one datagram. */
struct lb_frag_key {
	union lb_addr saddr; /* client */
	union lb_addr daddr; /* VIP */
	__be32 id;           /* IPv4 identification (16 bits, zero-extended) or IPv6 fragment id */
	__u8 proto;          /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad[3];         /* zero */
};

/* Value of lb_frags: the ports the first fragment carried. */
struct lb_frag_ports {
	__be16 sport;
	__be16 dport;
};

/* Value of lb_config (one entry): runtime settings that must survive
 * restarts, hence a pinned map rather than .rodata globals. */
struct lb_config {
	__u64 tcp_timeout_ns; /* idle time after which a TCP entry is ignored */
	__u64 udp_timeout_ns; /* same for UDP */
	__u64 tcp_closing_timeout_ns; /* same for TCP entries not established (SYN seen, FIN, RST) */
	__u32 table_size;     /* bound of every table's size (Go only: each table
	                       * holds its own size in slot 0) */
	__u32 abi;            /* LB_ABI_VERSION of the writer */
	__u8 if_mac[6];       /* source MAC of redirected frames: the interface's */
	__u8 pad[2];
	__u32 last_cookie;    /* highest lb_backend.cookie ever handed out (Go only):
	                       * survives restarts so a reused slot never gets a
	                       * cookie that stale conntrack entries still carry */
	__u32 ct_gen;         /* bumped by Go after it deletes or writes conntrack
	                       * entries: invalidates every flow cache entry
	                       * (lb_flow_cache). Was padding (always 0) before
	                       * ABI 4 had it: 0 is a valid generation. */
};

/* Value of lb_clock (per CPU): CLOCK_MONOTONIC_COARSE as of the last jiffy
 * this CPU saw. The coarse clock only moves on a tick, so reading it again
 * within the same jiffy gives the same value: the cache gives it without a
 * helper call (bpf_jiffies64 is inlined by the verifier). */
struct lb_clock {
	__u64 jiffies;
	__u64 coarse_ns;
};

/* Value of lb_ct_stats (per CPU): conntrack churn, so that evictions by
 * the LRU can be told: evicted = inserted - dropped - entries present
 * (minus what Go deleted). */
struct lb_ct_counters {
	__u64 inserted; /* new entries (bpf_map_update_elem) */
	__u64 renewed;  /* stale entries reused in place by a new flow */
	__u64 dropped;  /* stale entries deleted by the program */
};

/* The per-CPU flow cache in front of lb_ct4 (lb_flow_cache): 2^LB_FC_BITS
 * direct-mapped slots per CPU. */
#define LB_FC_BITS 13
#define LB_FC_SLOTS (1 << LB_FC_BITS)

/* In k1 of a flow cache entry: the top bit of the protocol byte (no
 * protocol dsrlb serves has it), marking a pending entry, which no
 * packet's key matches as an established copy. */
#define LB_FC_PENDING (1ULL << 39)

/* The bits of k1 that name the flow (ports, protocol): not the generation,
 * not LB_FC_PENDING. The slot index hashes only these, so that a flow's
 * copy and its pending choice share its slot in every generation. */
#define LB_FC_FLOW_BITS (LB_FC_PENDING - 1)

/* lb_ct_recent: two-byte slots (a power of two of them, lbd sizes it at
 * four per conntrack entry; LB_RECENT_SLOTS is the placeholder), packed 32
 * to a 64-byte map value so that the map is as large as its slots (an
 * array rounds each value up to 8 bytes), each value one cache line
 * (maps.h LB_MAP_LINES).
 * Each holds two times, in units of 2^LB_RECENT_SHIFT ns (~17 s) modulo
 * 255, plus one (0: never): when an lb_ct4 entry hashing to it was last
 * written, and when a SYN hashing to it last left a pending choice in its
 * CPU's flow cache. */
#define LB_RECENT_SLOTS (1 << 18)
#define LB_RECENT_PER_LINE 32
#define LB_RECENT_SHIFT 34

struct lb_recent {
	__u8 entry; /* an lb_ct4 entry was created or refreshed */
	__u8 pend;  /* a SYN's choice was left pending (lb_fc_pend) */
};

struct lb_recent_line {
	struct lb_recent slot[LB_RECENT_PER_LINE];
};

/* Value of lb_flow_cache: a copy of a valid, established lb_ct4 entry,
 * or the choice made for a flow's first packet that is not tracked yet
 * (pending: LB_FC_PENDING set in k1), 32 bytes (half a cache line). k0 and
 * k1 are the lb_ct4_key read as two u64 words; bits 40-63 of k1 (the key's
 * zero padding) hold the cache generation the copy was made under. */
struct lb_fc_entry {
	__u64 k0;           /* saddr, daddr */
	__u64 k1;           /* sport, dport, proto; bits 40-63: generation */
	__u64 last_seen_ns; /* the lb_ct4 entry's last_seen_ns when copied */
	__u32 backend_id;
	__u32 cookie;
};

/* Per-CPU counters, for services, backends and reasons alike. */
struct lb_counters {
	__u64 packets;    /* segments: GRO super-packets count gso_segs */
	__u64 bytes;      /* skb->len */
	__u64 new_flows;  /* flows scheduled (services, backends) */
	__u64 no_backend; /* packets passed for lack of a backend (services) */
};

#endif /* LB_COMMON_H */
