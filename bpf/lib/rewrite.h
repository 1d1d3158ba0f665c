/* rewrite.h — the only change made to a redirected frame: destination MAC =
 * backend, source MAC = the balancer interface (otherwise switches learn the
 * client's MAC on the balancer's port and lose the backends' replies). The
 * IP packet is untouched: that is what Direct Server Return means.
 */
#ifndef LB_REWRITE_H
#define LB_REWRITE_H

#include "common.h"

static __always_inline int lb_rewrite_macs(struct __sk_buff *skb, const struct lb_backend *be,
					   const struct lb_config *cfg)
{
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = (void *)(long)skb->data;
	__u8 macs[12];

	/* The Ethernet header is always in linear data at tc ingress: write
	 * it in place, no helper call, as 4 + 2 bytes per address (the
	 * verifier allows unaligned packet stores on the architectures lbd
	 * ships for; clang would copy a 6-byte memcpy to the packet bytewise).
	 * be->mac and cfg->if_mac start 4-byte aligned. */
	if ((void *)(eth + 12) <= data_end) {
		*(__u32 *)eth = *(const __u32 *)be->mac;
		*(__u16 *)(eth + 4) = *(const __u16 *)(be->mac + 4);
		*(__u32 *)(eth + 6) = *(const __u32 *)cfg->if_mac;
		*(__u16 *)(eth + 10) = *(const __u16 *)(cfg->if_mac + 4);
		return 0;
	}
	__builtin_memcpy(macs, be->mac, 6);
	__builtin_memcpy(macs + 6, cfg->if_mac, 6);
	return bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0);
}

#endif /* LB_REWRITE_H */
