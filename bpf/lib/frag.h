/* frag.h — IP fragments follow their datagram. The first fragment carries
 * the TCP/UDP header: its ports are recorded under (client, VIP, proto, IP
 * id) in lb_frags, and later fragments take them from there, so every
 * fragment is scheduled as the datagram's flow: same service (explicit
 * ports too), same conntrack entry, same backend as the flow's unfragmented
 * packets (as Cilium does).
 *
 * A later fragment that arrives before its first (reordering) finds no
 * entry: it passes to the host (LB_REASON_PASS_FRAGMENT) and that datagram
 * is lost, as it would be on any path that loses a fragment; the client's
 * retransmission normally arrives in order. Guessing a backend instead
 * would split the datagram between two hosts.
 */
#ifndef LB_FRAG_H
#define LB_FRAG_H

#include "common.h"
#include "maps.h"
#include "parse.h"

static __always_inline void lb_frag_key(const struct lb_pkt *pkt, struct lb_frag_key *k)
{
	k->saddr = pkt->flow.saddr;
	k->daddr = pkt->flow.daddr;
	k->id = pkt->frag_id;
	k->proto = pkt->flow.proto;
}

/* lb_frag_remember records a first fragment's ports. */
static __always_inline void lb_frag_remember(const struct lb_pkt *pkt)
{
	struct lb_frag_key k = {};
	struct lb_frag_ports v = {.sport = pkt->flow.sport, .dport = pkt->flow.dport};

	lb_frag_key(pkt, &k);
	bpf_map_update_elem(&lb_frags, &k, &v, BPF_ANY);
}

/* lb_frag_ports gives a later fragment its datagram's ports; 0: unknown. */
static __always_inline int lb_frag_ports(struct lb_pkt *pkt)
{
	struct lb_frag_key k = {};
	struct lb_frag_ports *v;

	lb_frag_key(pkt, &k);
	v = bpf_map_lookup_elem(&lb_frags, &k);
	if (!v)
		return 0;
	pkt->flow.sport = v->sport;
	pkt->flow.dport = v->dport;
	return 1;
}

#endif /* LB_FRAG_H */
