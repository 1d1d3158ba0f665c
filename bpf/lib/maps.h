/* maps.h — every map of the data plane. Sizes written here are placeholders:
 * lbd/datapath sets max_entries from its Options before loading, and pins
 * every map (by name) under the pin path so a restarted lbd adopts them.
 */
#ifndef LB_MAPS_H
#define LB_MAPS_H

#include "common.h"

/* (vip, proto, port) -> service. Looked up with the packet's port, then
 * with port 0 (the all-ports service of the VIP). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(max_entries, 16384);
} lb_services SEC(".maps");

/* backend id -> MAC, state, cookie. Ids are allocated by Go; slot 0 is
 * never used so a zeroed conntrack value cannot look valid. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, 65536);
} lb_backends SEC(".maps");

/* Inner table. Slot 0 holds n, the table's size (0: no usable backend);
 * slots 1..n name backend ids. Each service's table is sized from its
 * backend count (BPF_F_INNER_MAP: inner maps of any max_entries), so the
 * size travels with the table it describes. Go fills a new one aside
 * (BPF_F_MMAPABLE: one memory copy) and switches it in with the outer
 * map's update: the program never reads a half-written table. */
struct lb_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 65538);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
};

/* service id -> its weighted Maglev table (up backends only). Used by the
 * maglev and source schedulers, and by every service as the fallback for
 * TCP packets that are not SYN and have no conntrack entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 4096);
	__array(values, struct lb_table);
} lb_maglev SEC(".maps");

/* service id -> its weighted round-robin sequence (roundrobin services
 * only), walked one slot per new flow. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 4096);
	__array(values, struct lb_table);
} lb_rr SEC(".maps");

/* service id -> next round-robin slot. Shared by all CPUs (atomic add) so
 * the sequence is exact, at the price of one contended cache line per new
 * flow — new flows only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4096);
} lb_rr_next SEC(".maps");

/* flow -> backend. LRU: when full the least recently used flow is evicted
 * and, if it comes back, is rescheduled (the Maglev fallback keeps a TCP
 * flow on the same backend while the table is unchanged). IPv4 flows live
 * in lb_ct4 (compact key), every other flow here; each map has
 * balancer.conntrack.size entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_ct4_key);
	__type(value, struct lb_ct_entry);
	__uint(max_entries, 1048576);
} lb_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_flow);
	__type(value, struct lb_ct_entry);
	__uint(max_entries, 1048576);
} lb_conntrack SEC(".maps");

/* CPU * LB_FC_SLOTS + slot (hash of the lb_ct4 key) -> a copy of an
 * established IPv4 flow's entry (struct lb_fc_entry), so that most packets
 * of a busy flow skip the LRU hash lookup: one array read instead. Each CPU
 * owns its LB_FC_SLOTS entries (lbd sets max_entries to LB_FC_SLOTS times
 * the possible CPUs). A plain array, not a per-CPU one: a per-CPU array
 * reads a per-slot pointer table before the value, two cold cache lines
 * per packet under load instead of one. Filled from a valid lb_ct4
 * hit, trusted for at most LB_CT_REFRESH_NS after the entry's last
 * refresh, so the LRU entry is still looked up (and its recency and
 * timestamp refreshed) about once a second per busy flow and CPU. Also
 * holds the pending choice of a SYN tracked late (sched.h): a SYN flood
 * displaces cached copies (their flows take the LRU path: slower, same
 * answer), never an entry. Not pinned: a cache, each loaded
 * program has its own. BPF_F_MMAPABLE only for where its values start: a
 * plain array's start 312 bytes into its allocation (56 modulo 64), so
 * every other 32-byte entry would straddle two cache lines; an mmapable
 * array's start on a page (LB_MAP_LINES). */
#define LB_MAP_LINES BPF_F_MMAPABLE
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_fc_entry);
	__uint(max_entries, LB_FC_SLOTS);
	__uint(map_flags, LB_MAP_LINES);
} lb_flow_cache SEC(".maps");

/* hash of an IPv4 flow -> when an lb_ct4 entry of that hash was last
 * created or refreshed, and when a SYN of that hash last left a pending
 * choice (conntrack.h lb_recent_*): a SYN whose entry time is older than
 * any entry lives has no entry that stands, and skips the LRU lookup; one
 * whose pending time is older than a pending choice lives has none, and
 * skips reading its flow cache slot. Not pinned: a program's marks cover
 * the entries it wrote; entries of an earlier program are covered by
 * lb_recent_since_ns (pending choices are in its own flow cache). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_recent_line);
	__uint(max_entries, LB_RECENT_SLOTS / LB_RECENT_PER_LINE);
	__uint(map_flags, LB_MAP_LINES); /* each value one cache line */
} lb_ct_recent SEC(".maps");

/* (client, VIP, proto, IP id) -> ports of the datagram, written by its
 * first fragment so that later fragments (which carry no ports) follow it
 * to the same service and flow, hence backend. LRU: a datagram's fragments
 * arrive within milliseconds; old entries are simply reused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_frag_key);
	__type(value, struct lb_frag_ports);
	__uint(max_entries, 8192);
} lb_frags SEC(".maps");

/* A bit per hash of a destination address (lb_vip_bit): set for every VIP
 * of a service. A clear bit proves the packet is for no VIP, so the host's
 * own traffic costs one array read instead of two hash lookups. Go sets a
 * VIP's bit before writing its service keys and clears it only after
 * deleting them: no false negatives, ever. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LB_VIP_FILTER_WORDS);
} lb_vip_filter SEC(".maps");

/* Single entry (key 0), per CPU: struct lb_ct_counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_ct_counters);
	__uint(max_entries, 1);
} lb_ct_stats SEC(".maps");

/* Single entry (key 0), per CPU: struct lb_clock. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_clock);
	__uint(max_entries, 1);
} lb_clock SEC(".maps");

/* Single entry (key 0): struct lb_config. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(max_entries, 1);
} lb_cfg SEC(".maps");

/* service id -> counters (packets, bytes, new flows, no backend). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counters);
	__uint(max_entries, 4096);
} lb_svc_stats SEC(".maps");

/* backend id -> counters (packets, bytes, new flows). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counters);
	__uint(max_entries, 65536);
} lb_be_stats SEC(".maps");

/* enum lb_reason -> counters (packets, bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counters);
	__uint(max_entries, LB_REASON_MAX);
} lb_global_stats SEC(".maps");

#endif /* LB_MAPS_H */
