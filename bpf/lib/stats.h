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

/* lb_add adds segs packets of len bytes to map[key]. */
static __always_inline void lb_add(void *map, __u32 key, __u64 segs, __u64 len, int is_new)
{
	struct lb_counters *c = bpf_map_lookup_elem(map, &key);

	if (!c)
		return;
	c->packets += segs;
	c->bytes += len;
	if (is_new)
		c->new_flows++;
}

/* lb_count adds a forwarded (or, for reasons, seen) packet to map[key]. */
static __always_inline void lb_count(void *map, __u32 key, const struct __sk_buff *skb, int is_new)
{
	lb_add(map, key, lb_segs(skb), skb->len, is_new);
}

/* lb_count_redirect counts a redirected packet for its service, backend
 * and reason, reading the skb's length and segments once. */
static __always_inline void lb_count_redirect(const struct __sk_buff *skb, __u32 svc_id, __u32 be_id, __u32 reason,
					      int is_new)
{
	__u64 segs = lb_segs(skb), len = skb->len;

	lb_add(&lb_svc_stats, svc_id, segs, len, is_new);
	lb_add(&lb_be_stats, be_id, segs, len, is_new);
	lb_add(&lb_global_stats, reason, segs, len, 0);
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
