// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* lb.c — the dsrlb tc ingress program: parse (direct packet access for the
 * common case), let a packet for no VIP continue at once (VIP filter),
 * follow a valid conntrack entry or else find the service and pick a
 * backend, rewrite the MACs, redirect out of the same interface. Everything
 * that is not for a configured service continues untouched. The work is in
 * the headers of lib/, one concern each.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/service.h"
#include "lib/frag.h"
#include "lib/sched.h"
#include "lib/rewrite.h"
#include "lib/stats.h"
#include "lib/fast.h"

/* Referenced so that bpf2go -type finds these in the object's BTF. */
const volatile enum lb_sched lb_unused_sched __attribute__((unused));
const volatile enum lb_backend_state lb_unused_state __attribute__((unused));
const volatile enum lb_reason lb_unused_reason __attribute__((unused));
const volatile enum lb_abi lb_unused_abi __attribute__((unused));
const volatile enum lb_ct_state lb_unused_ct_state __attribute__((unused));
const volatile enum lb_check_port lb_unused_check_port __attribute__((unused));

static __always_inline int lb_pass(struct __sk_buff *skb, __u32 reason)
{
	lb_count_reason(skb, reason);
	return LB_ACT_CONTINUE;
}

static __always_inline __u32 lb_redirect_reason(const struct lb_pkt *pkt)
{
	if (pkt->kind == LB_PKT_ICMP_ERROR)
		return LB_REASON_REDIRECT_ICMP;
	if (pkt->kind == LB_PKT_FRAGMENT)
		return LB_REASON_REDIRECT_FRAGMENT;
	return LB_REASON_REDIRECT;
}

static __always_inline __u32 lb_no_service_reason(const struct lb_pkt *pkt)
{
	if (pkt->kind == LB_PKT_ICMP_ERROR)
		return LB_REASON_PASS_ICMP;
	if (pkt->kind == LB_PKT_FRAGMENT)
		return LB_REASON_PASS_FRAGMENT;
	return LB_REASON_PASS_NO_SERVICE;
}

/* lb_not_for_vip is the verdict of a packet for no service: it continues
 * to the stack, unless it answers a DSR-path check (dropped: lbd's packet
 * socket saw it before tc ingress, and the stack would reset it). */
static __always_inline int lb_not_for_vip(struct __sk_buff *skb, const struct lb_pkt *pkt)
{
	if (lb_check_reply(pkt)) {
		lb_count_reason(skb, LB_REASON_DROP_CHECK_REPLY);
		return LB_ACT_DROP;
	}
	return lb_pass(skb, lb_no_service_reason(pkt));
}

/* PACKET_OTHERHOST of linux/if_packet.h, which the vendored headers lack. */
#define LB_PACKET_OTHERHOST 3

/* lb_forward finds the backend: a valid conntrack entry first (the
 * common case: one hash lookup; the backend names its service), else the
 * service and its scheduler. Go deletes the entries of a (vip, proto,
 * port) it stops serving, so an entry implies its service. An IPv4 SYN
 * finds its service first: if its flow is tracked late (sched.h), the
 * consistent choice is all it needs. */
static __always_inline struct lb_backend *lb_forward(struct __sk_buff *skb, const struct lb_pkt *pkt,
						     const struct lb_config *cfg, __u32 *id, __u32 *svc_id,
						     int *is_new, __u32 *reason)
{
	int starts = lb_starts_flow(pkt);
	/* CLOCK_MONOTONIC_COARSE: no TSC read per packet; timeouts are
	 * seconds, the clock's tick is milliseconds. */
	__u64 now = lb_now();
	struct lb_ct_entry *stale = NULL;
	struct lb_service *svc;
	struct lb_backend *be;

	int new_syn = starts && pkt->flow.proto == IPPROTO_TCP;

	svc = NULL;
	if (new_syn && lb_flow_is4(&pkt->flow)) {
		/* The service first: a SYN tracked late needs no lookup. */
		svc = lb_service_lookup(pkt);
		if (!svc) {
			*reason = lb_no_service_reason(pkt);
			return NULL;
		}
		*svc_id = svc->id;
		if (lb_tracks_late(pkt, svc)) {
			be = lb_syn_late(pkt, svc, cfg, now, id, is_new);
			if (!be) {
				lb_count_no_backend(svc->id, skb);
				*reason = LB_REASON_PASS_NO_BACKEND;
				return NULL;
			}
			return be;
		}
	}
	be = lb_ct_lookup(pkt, cfg, now, new_syn, id, &stale);
	if (be) {
		*svc_id = be->service_id;
		return be;
	}
	if (!svc)
		svc = lb_service_lookup(pkt);
	if (!svc) {
		lb_ct_drop(&pkt->flow, stale);
		*reason = lb_no_service_reason(pkt);
		return NULL;
	}
	*svc_id = svc->id;
	be = lb_schedule(pkt, svc, cfg, now, starts, stale, id, is_new);
	if (!be) {
		lb_count_no_backend(svc->id, skb);
		*reason = LB_REASON_PASS_NO_BACKEND;
	}
	return be;
}

SEC("tc")
int dsrlb_ingress(struct __sk_buff *skb)
{
	struct lb_pkt pkt = {};
	struct lb_backend *be;
	struct lb_config *cfg;
	__u32 reason, key = 0, id = 0, svc_id = 0;
	int is_new = 0, ret;

	/* A frame addressed to another MAC reaches us when the NIC is
	 * promiscuous (tcpdump, a bridge port) or a switch floods unknown
	 * unicast: it belongs to another balancer or host, and redirecting it
	 * would hand a backend a duplicate. */
	if (skb->pkt_type == LB_PACKET_OTHERHOST)
		return lb_pass(skb, LB_REASON_PASS_OTHER_HOST);
	/* The commonest packets first: a flow cache hit, a packet for no VIP. */
	ret = lb_fast4(skb);
	if (ret != LB_FAST_SLOW)
		return ret;

	reason = lb_parse_fast(skb, &pkt);
	if (reason == LB_PARSE_SLOW) {
		pkt = (struct lb_pkt){};
		reason = lb_parse(skb, &pkt);
	}
	if (reason != LB_CANDIDATE)
		return lb_pass(skb, reason);
	if (!lb_vip_maybe(&pkt.flow.daddr))
		return lb_not_for_vip(skb, &pkt);
	/* A later fragment learns its datagram's ports from the first. */
	if (pkt.kind == LB_PKT_FRAGMENT && !pkt.frag_first && !lb_frag_ports(&pkt))
		return lb_pass(skb, LB_REASON_PASS_FRAGMENT);
	cfg = bpf_map_lookup_elem(&lb_cfg, &key);
	if (!cfg)
		return lb_pass(skb, lb_no_service_reason(&pkt));

	be = lb_forward(skb, &pkt, cfg, &id, &svc_id, &is_new, &reason);
	if (!be && reason == LB_REASON_PASS_NO_SERVICE)
		return lb_not_for_vip(skb, &pkt); /* the VIP filter's false positive */
	if (!be)
		return lb_pass(skb, reason);
	if (pkt.kind == LB_PKT_FRAGMENT && pkt.frag_first)
		lb_frag_remember(&pkt);
	if (lb_rewrite_macs(skb, be, cfg) < 0)
		return lb_pass(skb, LB_REASON_PASS_MALFORMED);

	lb_count_redirect(skb, svc_id, id, lb_redirect_reason(&pkt), is_new);
	return bpf_redirect(skb->ifindex, 0);
}

char __license[] SEC("license") = "Dual BSD/GPL";
