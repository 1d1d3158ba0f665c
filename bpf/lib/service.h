/* service.h — the VIP filter (a packet for no VIP stops there, before any
 * hash lookup), and the service of a flow: (vip, proto, port), then the
 * VIP's all-ports service (port 0). Fragments carry their datagram's ports (from
 * the first fragment, lb_frags), so they find the service as any packet.
 */
#ifndef LB_SERVICE_H
#define LB_SERVICE_H

#include "common.h"
#include "maps.h"
#include "parse.h"

/* lb_vip_bit is the filter bit of an address: its four words folded to
 * 16 bits (mirrored by lbd/datapath vipBit). Not a strong hash: it only
 * has to spread a few hundred VIPs over 65,536 bits. */
static __always_inline __u32 lb_vip_bit(const union lb_addr *a)
{
	__u32 x = a->w[0] ^ a->w[1] ^ a->w[2] ^ a->w[3];

	x ^= x >> 16;
	return x & (LB_VIP_FILTER_BITS - 1);
}

/* lb_vip_maybe reports whether addr may be a VIP (false: surely not). */
static __always_inline int lb_vip_maybe(const union lb_addr *addr)
{
	__u32 bit = lb_vip_bit(addr), word = bit / 64;
	__u64 *w = bpf_map_lookup_elem(&lb_vip_filter, &word);

	return w && (*w >> (bit % 64)) & 1;
}

/* lb_service_find is the service of (vip, proto, port), else of the
 * VIP's all-ports service. */
static __always_inline struct lb_service *lb_service_find(const union lb_addr *vip, __u8 proto, __be16 port)
{
	struct lb_service_key key = {
		.vip = *vip,
		.port = port,
		.proto = proto,
	};
	struct lb_service *svc;

	svc = bpf_map_lookup_elem(&lb_services, &key);
	if (svc)
		return svc;
	key.port = 0;
	return bpf_map_lookup_elem(&lb_services, &key);
}

static __always_inline struct lb_service *lb_service_lookup(const struct lb_pkt *pkt)
{
	return lb_service_find(&pkt->flow.daddr, pkt->flow.proto, pkt->flow.dport);
}

/* lb_check_reply reports whether a packet for no VIP is a backend's answer
 * to one of lbd's DSR-path checks: TCP from a service's VIP:port to a check
 * port (LB_CHECK_PORT_*). The parser's "client -> VIP" orientation is the
 * other way round here: saddr/sport are the VIP's. The cheap tests come
 * first: every other packet for no VIP costs one compare, no lookup. */
static __always_inline int lb_check_reply(const struct lb_pkt *pkt)
{
	__u16 dport = bpf_ntohs(pkt->flow.dport);

	/* The port first: it alone sends nearly every packet on its way. */
	if (dport < LB_CHECK_PORT_MIN || (LB_CHECK_PORT_MAX < 65535 && dport > LB_CHECK_PORT_MAX))
		return 0;
	if (pkt->flow.proto != IPPROTO_TCP || pkt->kind != LB_PKT_FLOW)
		return 0;
	return lb_vip_maybe(&pkt->flow.saddr) && lb_service_find(&pkt->flow.saddr, IPPROTO_TCP, pkt->flow.sport);
}

#endif /* LB_SERVICE_H */
