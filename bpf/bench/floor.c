// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* floor.c — the programs dsrlb's data plane is measured against
 * (lbd/datapath BenchmarkFloor, BENCHMARKS.md), never attached by lbd:
 *
 *   floor_redirect  the least a DSR balancer does to a packet of a tracked
 *                   flow with nothing looked up: write the destination and
 *                   source MACs (direct packet access) and redirect out of
 *                   the interface the frame came in on;
 *   floor_noop      returns "continue" at once: the floor of the tax on the
 *                   host's traffic that is not for a VIP;
 *   floor_track     the least a balancer that remembers flows does to the
 *                   first packet of one: look its 5-tuple up in an LRU hash
 *                   of dsrlb's IPv4 layout (16-byte key, 16-byte value, 1M
 *                   entries), insert it on a miss, then as floor_redirect.
 *                   No parsing beyond fixed offsets, no service, no
 *                   scheduling: the kernel's LRU insert is the cost.
 *   floor_vip       floor_redirect for real traffic (dsrlb-bench's floor
 *                   mode, attached with tcx ahead of lbd's program): frames
 *                   to one IPv4 VIP get the MACs set before load and are
 *                   redirected, every other frame continues. One compare
 *                   more than floor_redirect, so that the balancer's ARP
 *                   and health checks keep working under it.
 *   floor_vip_track floor_vip plus floor_track's state for real traffic
 *                   (dsrlb-bench's track mode, attached the same way): a
 *                   TCP/UDP frame to the VIP (IPv4 without options) has its
 *                   5-tuple looked up in floor_vip_ct (the same layout;
 *                   65536 entries compiled in, dsrlb-bench sizes it as
 *                   lbd's conntrack) and inserted on a miss before the
 *                   redirect; other frames to the VIP are redirected
 *                   untracked, frames not for the VIP continue. The least a
 *                   balancer that remembers flows costs under real load.
 *   floor_vip_slot  floor_vip plus the least per-flow state there is: the
 *                   same frames' 5-tuple hashed to one 16-byte slot of a
 *                   plain array (floor_vip_slots, sized as lbd's conntrack:
 *                   no bucket, no lock, no LRU list), read, and written
 *                   with the 5-tuple when it holds another. One per-flow
 *                   cache line per packet: the lower bound of any design
 *                   that looks a flow's state up per packet, as keeping
 *                   flows on their backend across a table change and
 *                   tracking their TCP state both do.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

struct floor_key {
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u8 proto, pad[3];
};

struct floor_val {
	__u64 last_seen_ns;
	__u32 backend_id, cookie;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct floor_key);
	__type(value, struct floor_val);
	__uint(max_entries, 1048576);
} floor_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct floor_key);
	__type(value, struct floor_val);
	__uint(max_entries, 65536);
} floor_vip_ct SEC(".maps");

SEC("tc")
int floor_redirect(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	const __u8 macs[12] = {0x02, 0xbe, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 1};

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(eth->h_dest, macs, sizeof(macs));
	return bpf_redirect(skb->ifindex, 0);
}

/* floor_vip's settings, written before load (floor.LoadVIP). */
const volatile __be32 floor_vip_addr = 0;
/* Destination then source MAC, as three words: read through volatile
 * (a memcpy would cast it away and clang would fold the zeros in). */
const volatile __u32 floor_vip_macs[3] = {0};

/* floor_vip_redirect writes floor_vip_macs into eth and redirects it. */
static __always_inline int floor_vip_redirect(struct __sk_buff *skb, struct ethhdr *eth)
{
	*(__u32 *)eth->h_dest = floor_vip_macs[0];
	*(__u32 *)(eth->h_dest + 4) = floor_vip_macs[1];
	*(__u32 *)(eth->h_dest + 8) = floor_vip_macs[2];
	return bpf_redirect(skb->ifindex, 0);
}

SEC("tc")
int floor_vip(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	__u8 *ip = (void *)(eth + 1);

	if ((void *)(ip + 20) > data_end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP) || *(__be32 *)(ip + 16) != floor_vip_addr)
		return TC_ACT_UNSPEC;
	return floor_vip_redirect(skb, eth);
}

/* floor_vip_flow reads the frame's 5-tuple into k when it is TCP or UDP
 * to the VIP (IPv4 without options, ports right after: the bench's
 * frames): 1, with eth set; 0 for another frame to the VIP (redirected
 * untracked); -1 for a frame not for the VIP (continues). */
static __always_inline int floor_vip_flow(struct __sk_buff *skb, struct ethhdr **eth, struct floor_key *k)
{
	void *data_end = (void *)(long)skb->data_end;
	__u8 *ip;

	*eth = (void *)(long)skb->data;
	ip = (void *)(*eth + 1);
	if ((void *)(ip + 20) > data_end)
		return -1;
	if ((*eth)->h_proto != __builtin_bswap16(ETH_P_IP) || *(__be32 *)(ip + 16) != floor_vip_addr)
		return -1;
	if ((ip[9] != IPPROTO_TCP && ip[9] != IPPROTO_UDP) || ip[0] != 0x45 || (void *)(ip + 24) > data_end)
		return 0;
	__builtin_memcpy(&k->saddr, ip + 12, 8);
	__builtin_memcpy(&k->sport, ip + 20, 4);
	k->proto = ip[9];
	return 1;
}

SEC("tc")
int floor_vip_track(struct __sk_buff *skb)
{
	struct floor_key k = {};
	struct floor_val v = {.backend_id = 1, .cookie = 1};
	struct ethhdr *eth;
	int flow = floor_vip_flow(skb, &eth, &k);

	if (flow < 0)
		return TC_ACT_UNSPEC;
	if (flow && !bpf_map_lookup_elem(&floor_vip_ct, &k)) {
		v.last_seen_ns = bpf_jiffies64();
		bpf_map_update_elem(&floor_vip_ct, &k, &v, BPF_ANY);
	}
	return floor_vip_redirect(skb, eth);
}

/* floor_vip_slots: one floor_key per slot; 65536 compiled in, sized by
 * floor.LoadVIPSlot to a power of two (floor_vip_slot_bits). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct floor_key);
	__uint(max_entries, 65536);
} floor_vip_slots SEC(".maps");

const volatile __u32 floor_vip_slot_bits = 16;

SEC("tc")
int floor_vip_slot(struct __sk_buff *skb)
{
	struct floor_key k = {};
	struct ethhdr *eth;
	__u64 w0, w1, *slot;
	int flow = floor_vip_flow(skb, &eth, &k);
	__u32 i;

	if (flow < 0)
		return TC_ACT_UNSPEC;
	if (flow) {
		__builtin_memcpy(&w0, &k, 8);
		__builtin_memcpy(&w1, (__u8 *)&k + 8, 8);
		i = ((w0 ^ (w1 * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL) >> (64 - floor_vip_slot_bits);
		slot = bpf_map_lookup_elem(&floor_vip_slots, &i);
		if (slot && (slot[0] != w0 || slot[1] != w1)) {
			slot[0] = w0;
			slot[1] = w1;
		}
	}
	return floor_vip_redirect(skb, eth);
}

SEC("tc")
int floor_noop(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("tc")
int floor_track(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	const __u8 macs[12] = {0x02, 0xbe, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 1};
	__u8 *ip = (void *)(eth + 1);
	struct floor_key k = {};
	struct floor_val v = {.backend_id = 1, .cookie = 1};

	/* IPv4 without options, TCP/UDP ports right after: the benchmark's frames. */
	if ((void *)(ip + 24) > data_end)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(&k.saddr, ip + 12, 8);
	__builtin_memcpy(&k.sport, ip + 20, 4);
	k.proto = ip[9];
	if (!bpf_map_lookup_elem(&floor_ct, &k)) {
		v.last_seen_ns = bpf_jiffies64();
		bpf_map_update_elem(&floor_ct, &k, &v, BPF_ANY);
	}
	__builtin_memcpy(eth->h_dest, macs, sizeof(macs));
	return bpf_redirect(skb->ifindex, 0);
}

char __license[] SEC("license") = "Dual BSD/GPL";
