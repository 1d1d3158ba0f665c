/* service.h — finds the service of a flow: (vip, proto, port) first, then
 * the VIP's all-ports service (port 0). Fragments only ever match the
 * all-ports service: a non-first fragment has no port, and every fragment of
 * a datagram must take the same decision.
 */
#ifndef LB_SERVICE_H
#define LB_SERVICE_H

#include "common.h"
#include "maps.h"
#include "parse.h"

static __always_inline struct lb_service *lb_service_lookup(const struct lb_pkt *pkt)
{
	struct lb_service_key key = {
		.vip = pkt->flow.daddr,
		.port = pkt->flow.dport,
		.proto = pkt->flow.proto,
	};
	struct lb_service *svc;

	if (pkt->kind != LB_PKT_FRAGMENT) {
		svc = bpf_map_lookup_elem(&lb_services, &key);
		if (svc)
			return svc;
	}
	key.port = 0;
	return bpf_map_lookup_elem(&lb_services, &key);
}

#endif /* LB_SERVICE_H */
