/* conntrack.h — the LRU flow table that keeps an established flow on its
 * backend across table changes. An entry is valid while it is younger than
 * the protocol's idle timeout and its backend slot still holds the same
 * backend (cookie) in state up or drain; an invalid entry is deleted so a
 * later revival of the slot cannot pull the flow back.
 */
#ifndef LB_CONNTRACK_H
#define LB_CONNTRACK_H

#include <linux/in.h>
#include "common.h"
#include "maps.h"

static __always_inline __u64 lb_ct_timeout(const struct lb_config *cfg, __u8 proto)
{
	return proto == IPPROTO_TCP ? cfg->tcp_timeout_ns : cfg->udp_timeout_ns;
}

/* lb_ct_lookup returns the flow's backend and its id, or NULL. */
static __always_inline struct lb_backend *lb_ct_lookup(const struct lb_flow *flow, const struct lb_config *cfg,
						       __u64 now, __u32 *id)
{
	struct lb_ct_entry *ct = bpf_map_lookup_elem(&lb_conntrack, flow);
	struct lb_backend *be;

	if (!ct)
		return NULL;
	if (now - ct->last_seen_ns > lb_ct_timeout(cfg, flow->proto))
		goto invalid;
	be = bpf_map_lookup_elem(&lb_backends, &ct->backend_id);
	if (!be || be->cookie != ct->cookie ||
	    (be->state != LB_BACKEND_UP && be->state != LB_BACKEND_DRAIN))
		goto invalid;
	if (now - ct->last_seen_ns > LB_CT_REFRESH_NS)
		ct->last_seen_ns = now;
	*id = ct->backend_id;
	return be;
invalid:
	bpf_map_delete_elem(&lb_conntrack, flow);
	return NULL;
}

static __always_inline void lb_ct_insert(const struct lb_flow *flow, __u32 id, const struct lb_backend *be, __u64 now)
{
	struct lb_ct_entry ct = {
		.last_seen_ns = now,
		.backend_id = id,
		.cookie = be->cookie,
	};

	bpf_map_update_elem(&lb_conntrack, flow, &ct, BPF_ANY);
}

#endif /* LB_CONNTRACK_H */
