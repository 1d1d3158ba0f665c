/* sched.h — picks a backend for a packet without a valid conntrack entry:
 * the service's scheduler for new flows, or the consistent (Maglev) table
 * for the others (TCP without SYN, ICMP errors), which create an entry only
 * for a flow tracked late (lb_tracks_late; never for an ICMP error, a
 * fragment or a RST). Fragments carry their datagram's ports and are scheduled as its
 * packets.
 */
#ifndef LB_SCHED_H
#define LB_SCHED_H

#include "common.h"
#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "conntrack.h"

/* lb_table_get reads slot 1 + h % n of the service's table in outer
 * (lb_maglev or lb_rr), n being the table's own size in slot 0, and
 * returns that backend if it is up. */
static __always_inline struct lb_backend *lb_table_get(void *outer, __u32 svc_id, __u32 h, __u32 *id)
{
	struct lb_backend *be;
	__u32 *bid, *n, slot = 0;
	void *table;

	table = bpf_map_lookup_elem(outer, &svc_id);
	if (!table)
		return NULL; /* never written */
	n = bpf_map_lookup_elem(table, &slot);
	if (!n || !*n)
		return NULL; /* no up backend: Go wrote an empty table */
	slot = 1 + h % *n;
	bid = bpf_map_lookup_elem(table, &slot);
	if (!bid)
		return NULL;
	be = bpf_map_lookup_elem(&lb_backends, bid);
	/* Go only tables up backends, and switches a table before marking a
	 * backend down; checking again costs nothing. */
	if (!be || be->state != LB_BACKEND_UP)
		return NULL;
	*id = *bid;
	return be;
}

/* lb_pick_consistent: the service's stateless choice. source hashes the
 * client address; maglev and roundrobin hash the flow. */
static __always_inline struct lb_backend *lb_pick_consistent(const struct lb_service *svc, const struct lb_flow *flow,
							     const struct lb_config *cfg, __u32 *id)
{
	__u32 h;

	if (svc->sched == LB_SCHED_SOURCE)
		h = lb_hash_source(&flow->saddr);
	else
		h = lb_hash_flow(flow);
	return lb_table_get(&lb_maglev, svc->id, h, id);
}

static __always_inline struct lb_backend *lb_pick_rr(const struct lb_service *svc, const struct lb_config *cfg, __u32 *id)
{
	__u32 *next = bpf_map_lookup_elem(&lb_rr_next, &svc->id);

	if (!next)
		return NULL;
	return lb_table_get(&lb_rr, svc->id, __sync_fetch_and_add(next, 1), id);
}

/* lb_starts_flow: a TCP SYN without ACK, or any UDP packet; never an ICMP
 * error (it is about a flow, never one). */
static __always_inline int lb_starts_flow(const struct lb_pkt *pkt)
{
	if (pkt->kind == LB_PKT_ICMP_ERROR)
		return 0;
	if (pkt->flow.proto == IPPROTO_TCP)
		return (pkt->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
	return 1; /* UDP: any packet without an entry starts a flow */
}

/* lb_tracks_late: the flow is IPv4 and its service's choice the consistent
 * one (maglev, source), so a TCP flow gets its entry from its second packet
 * instead of its SYN (lb_syn_late): the SYN's choice waits in the flow
 * cache, and a later packet that finds neither it nor an entry recomputes
 * the same choice (unless the table changed meanwhile) and tracks it. A
 * SYN flood then writes nothing to the shared table, and the handshake's
 * ACK pays for the insert. Round robin cannot recompute its choice: its
 * SYNs are tracked, and its other packets never create an entry. */
static __always_inline int lb_tracks_late(const struct lb_pkt *pkt, const struct lb_service *svc)
{
	return svc->sched != LB_SCHED_ROUNDROBIN && pkt->flow.proto == IPPROTO_TCP && lb_flow_is4(&pkt->flow);
}

/* lb_syn_late schedules the SYN of a flow that is tracked late. A SYN that
 * finds its flow's choice pending (a retransmission) keeps it, so that a
 * table change between the two does not split the handshake; one on the
 * ports of an entry that stands follows that entry, as every SYN did
 * before late tracking (lb_ct_standing; one read-only lookup). Neither is
 * a new flow. Otherwise: the consistent choice, recorded as pending in this
 * CPU's flow cache slot; the flow's next packet tracks it (lb_fc_commit).
 * The flow's lb_ct_recent slot (within one cache line) decides which of
 * the two reads are needed: a new flow's SYN usually makes neither, and
 * only writes its flow cache slot. ("Usually": a pending mark counts for
 * 86-103 s with the 60 s closing timeout, so above roughly slots / 100 s
 * new SYNs a second, 41,000-49,000 with 4 Mi slots, most slots are marked
 * and SYNs read their flow cache slot again, as they all did before.) */
static __always_inline struct lb_backend *lb_syn_late(const struct lb_pkt *pkt, const struct lb_service *svc,
						      const struct lb_config *cfg, __u64 now, __u32 *id, int *is_new)
{
	struct lb_ct4_key k = {};
	struct lb_fc_entry *fc;
	struct lb_recent *r;
	struct lb_ct_entry *ct;
	struct lb_backend *be;
	__u64 k0, k1;

	lb_ct4_key(&pkt->flow, &k);
	lb_fc_key(&k, cfg, &k0, &k1);
	r = lb_recent_slot(k0, k1);
	fc = lb_fc_slot(k0, k1);
	if (fc && lb_recent_pend_maybe(r, cfg, now)) {
		be = lb_fc_pending(fc, k0, k1, cfg, now);
		if (be) {
			*id = fc->backend_id;
			if (r)
				r->pend = lb_recent_tick(now);
			fc->last_seen_ns = now;
			return be;
		}
	}
	if (lb_recent_maybe(r, cfg, now)) {
		ct = bpf_map_lookup_elem(&lb_ct4, &k);
		lb_keep(ct);
		if (ct) {
			be = lb_ct_standing(ct, cfg, now);
			if (be) {
				*id = ct->backend_id;
				return be;
			}
		}
	}
	be = lb_pick_consistent(svc, &pkt->flow, cfg, id);
	if (!be)
		return NULL;
	if (fc) {
		if (r)
			r->pend = lb_recent_tick(now);
		lb_fc_pend(fc, k0, lb_fc_pkey(k1, cfg), now, *id, be->cookie);
	}
	*is_new = 1;
	return be;
}

/* lb_schedule picks the backend of a packet that has no valid conntrack
 * entry (NULL: none usable). starts: the packet may start a flow; it then
 * gets an entry (its stale one renewed), and *is_new is set. A packet that
 * does not start one gets the consistent choice, and an entry if its flow
 * is tracked late (not for a RST: nothing left to track; nor for an ICMP
 * error or a fragment, which a flood could otherwise use), unconfirmed: syn
 * seen (a FIN: closing), so a stray or spoofed packet is not counted active
 * and lives the closing timeout; the flow's next ACK makes it established. */
static __always_inline struct lb_backend *lb_schedule(const struct lb_pkt *pkt, const struct lb_service *svc,
						      const struct lb_config *cfg, __u64 now, int starts,
						      struct lb_ct_entry *stale, __u32 *id, int *is_new)
{
	struct lb_backend *be;

	if (!starts) {
		be = lb_pick_consistent(svc, &pkt->flow, cfg, id);
		if (be && pkt->kind == LB_PKT_FLOW && lb_tracks_late(pkt, svc) && !(pkt->tcp_flags & LB_TCP_RST)) {
			lb_ct_insert(&pkt->flow, *id, be, now, pkt->tcp_flags & LB_TCP_FIN ? LB_CT_CLOSING : LB_CT_SYN_SEEN,
				     stale);
			return be;
		}
		lb_ct_drop(&pkt->flow, stale);
		return be;
	}
	if (svc->sched == LB_SCHED_ROUNDROBIN)
		be = lb_pick_rr(svc, cfg, id);
	else
		be = lb_pick_consistent(svc, &pkt->flow, cfg, id);
	if (!be) {
		lb_ct_drop(&pkt->flow, stale);
		return NULL;
	}
	lb_ct_insert(&pkt->flow, *id, be, now, lb_first_state(pkt->flow.proto, pkt->tcp_flags), stale);
	*is_new = 1;
	return be;
}

#endif /* LB_SCHED_H */
