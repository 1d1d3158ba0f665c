// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* floor.c — the two programs dsrlb's data plane is measured against
 * (lbd/datapath BenchmarkFloor, BENCHMARKS.md), never attached anywhere:
 *
 *   floor_redirect  the least a DSR balancer does to a packet of a tracked
 *                   flow with nothing looked up: write the destination and
 *                   source MACs (direct packet access) and redirect out of
 *                   the interface the frame came in on;
 *   floor_noop      returns "continue" at once: the floor of the tax on the
 *                   host's traffic that is not for a VIP.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

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

SEC("tc")
int floor_noop(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char __license[] SEC("license") = "Dual BSD/GPL";
