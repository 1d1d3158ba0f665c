/* fast.h — the two commonest packets in a compact path, both IPv4 TCP with
 * a 20-byte header, not a fragment: one for no VIP (it continues, counted
 * as the full path counts it), and one of a flow whose established copy is
 * in this CPU's flow cache (no SYN, FIN or RST). Each gets exactly what
 * the full path would give it (the flow cache's own lb_fc_key and
 * lb_fc_copy, the same counters and rewrite) with a fraction of the code,
 * whose instructions a busy CPU's other work keeps evicting; anything else (LB_FAST_SLOW) takes the full
 * path, and so does a packet for no VIP to a check port (lb_check_reply
 * decides).
 */
#ifndef LB_FAST_H
#define LB_FAST_H

#include "common.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"
#include "rewrite.h"
#include "stats.h"

/* LB_FAST_SLOW: not for the compact path (no tc verdict is negative but
 * TC_ACT_UNSPEC, which a packet for no VIP gets). */
#define LB_FAST_SLOW (-2)

static __always_inline int lb_fast4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *th = (void *)(ip + 1);
	struct lb_ct4_key k = {};
	struct lb_fc_entry *fc;
	struct lb_backend *be;
	struct lb_config *cfg;
	__u32 key = 0, tot, id;
	union lb_addr vip;
	__u64 k0, k1;

	if ((void *)(th + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || *(__u8 *)ip != 0x45 ||
	    ip->protocol != IPPROTO_TCP || ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET))
		return LB_FAST_SLOW;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < sizeof(*ip) + sizeof(*th) || sizeof(*eth) + tot > skb->len || th->doff < 5)
		return LB_FAST_SLOW;
	lb4_addr(&vip, ip->daddr);
	if (!lb_vip_maybe(&vip)) {
		if (bpf_ntohs(th->dest) >= LB_CHECK_PORT_MIN)
			return LB_FAST_SLOW; /* may answer a DSR-path check */
		lb_count_reason(skb, LB_REASON_PASS_NO_SERVICE);
		return LB_ACT_CONTINUE;
	}
	if (((__u8 *)th)[13] & (LB_TCP_SYN | LB_TCP_FIN | LB_TCP_RST))
		return LB_FAST_SLOW;
	cfg = bpf_map_lookup_elem(&lb_cfg, &key);
	if (!cfg)
		return LB_FAST_SLOW;
	k.saddr = ip->saddr;
	k.daddr = ip->daddr;
	k.sport = th->source;
	k.dport = th->dest;
	k.proto = IPPROTO_TCP;
	lb_fc_key(&k, cfg, &k0, &k1);
	fc = lb_fc_slot(k0, k1);
	if (!fc)
		return LB_FAST_SLOW;
	be = lb_fc_copy(fc, k0, k1, IPPROTO_TCP, cfg, lb_now(), &id);
	if (!be)
		return LB_FAST_SLOW;
	if (lb_rewrite_macs(skb, be, cfg) < 0)
		return LB_FAST_SLOW;
	lb_count_redirect(skb, be->service_id, id, LB_REASON_REDIRECT, 0);
	return bpf_redirect(skb->ifindex, 0);
}

#endif /* LB_FAST_H */
