/* stats.h — per-CPU counters: by reason for every packet, by service and
 * backend for redirected ones. GRO super-packets count as gso_segs packets.
 */
#ifndef LB_STATS_H
#define LB_STATS_H

#include "common.h"
#include "maps.h"

static __always_inline __u64 lb_segs(const struct __sk_buff *skb)
{
	return skb->gso_segs ? skb->gso_segs : 1;
}

/* lb_count adds a forwarded (or, for reasons, seen) packet to map[key]. */
static __always_inline void lb_count(void *map, __u32 key, const struct __sk_buff *skb, int is_new)
{
	struct lb_counters *c = bpf_map_lookup_elem(map, &key);

	if (!c)
		return;
	c->packets += lb_segs(skb);
	c->bytes += skb->len;
	c->new_flows += is_new;
}

/* lb_count_no_backend counts a packet of a service passed for lack of a
 * usable backend; service packets/bytes count forwarded traffic only. */
static __always_inline void lb_count_no_backend(__u32 svc_id, const struct __sk_buff *skb)
{
	struct lb_counters *c = bpf_map_lookup_elem(&lb_svc_stats, &svc_id);

	if (c)
		c->no_backend += lb_segs(skb);
}

static __always_inline void lb_count_reason(const struct __sk_buff *skb, __u32 reason)
{
	lb_count(&lb_global_stats, reason, skb, 0);
}

#endif /* LB_STATS_H */
