/* parse.h — reads a frame into a struct lb_pkt: Ethernet with at most one
 * 802.1Q/802.1ad tag in the bytes, IPv4 (with options) or IPv6 (with
 * hop-by-hop, routing, destination options, fragment and AH headers), then
 * TCP, UDP or an ICMP/ICMPv6 error quoting a TCP/UDP packet.
 *
 * Two parsers. lb_parse_fast reads the common case — Ethernet, IPv4 without
 * options or IPv6 without extension headers, not a fragment, TCP or UDP —
 * by direct packet access, with no helper call, when those headers lie in
 * the skb's linear data. Anything else (and anything it doubts) goes to
 * lb_parse, which reads through bpf_skb_load_bytes: it fails cleanly past
 * the end of the packet (so a truncated frame is "malformed", never an
 * out-of-bounds read) and works on non-linear skbs (GRO) without verifier
 * bound puzzles. Both reach the same verdict for a frame the fast one takes.
 *
 * The outer VLAN tag of a frame received by a NIC is already in skb metadata
 * at tc ingress (skb->vlan_present/vlan_tci), not in the bytes; it is kept on
 * redirect, so the frame leaves on the VLAN it came from. A tag still in the
 * bytes is the inner tag of QinQ, or an interface without tag stripping.
 */
#ifndef LB_PARSE_H
#define LB_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "common.h"

/* Parsers return this when the packet may be ours; anything else is the
 * enum lb_reason of a pass. */
#define LB_CANDIDATE LB_REASON_REDIRECT
/* lb_parse_fast returns this when lb_parse must decide. */
#define LB_PARSE_SLOW LB_REASON_MAX

#define LB6_MAX_EXTHDRS 4 /* extension headers walked before giving up (unsupported) */

#define LB_IP_MF 0x2000     /* IPv4 more fragments */
#define LB_IP_OFFSET 0x1fff /* IPv4 fragment offset */
#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

/* IPv6 next-header values of extension headers (not all in 6.1 UAPI). */
#define LB6_NEXTHDR_HOP 0
#define LB6_NEXTHDR_ROUTING 43
#define LB6_NEXTHDR_FRAGMENT 44
#define LB6_NEXTHDR_AUTH 51
#define LB6_NEXTHDR_DEST 60
#define LB_IPPROTO_ICMPV6 58

/* ICMP and ICMPv6 share this 8-byte header; an error quotes the offending
 * packet right after it. */
struct lb_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest; /* unused / MTU (frag needed, packet too big) */
};

/* What kind of candidate the packet is. */
enum lb_pkt_kind {
	LB_PKT_FLOW = 0,       /* a TCP/UDP packet with ports */
	LB_PKT_FRAGMENT = 1,   /* an IP fragment: ports parsed if first, else from lb_frags */
	LB_PKT_ICMP_ERROR = 2, /* ICMP error; flow is the quoted flow, turned client->VIP */
};

/* A parsed packet. */
struct lb_pkt {
	struct lb_flow flow; /* client -> VIP */
	__u32 end;           /* offset where the IP packet ends (trailing padding excluded) */
	__be32 frag_id;      /* fragments: IPv4 identification or IPv6 fragment id */
	__u8 kind;           /* enum lb_pkt_kind */
	__u8 frag_first;     /* fragments: offset 0, carries the L4 header */
	__u8 tcp_flags;      /* byte 13 of the TCP header (SYN, ACK…); 0 if not seen */
};

/* lb_within reports whether len bytes at off lie inside the IP packet:
 * bytes past the IP length (Ethernet padding) are not headers. */
static __always_inline int lb_within(const struct lb_pkt *pkt, __u32 off, __u32 len)
{
	return off + len <= pkt->end;
}

static __always_inline void lb4_addr(union lb_addr *a, __be32 v4)
{
	/* IPv4-mapped, as netip.Addr.As16. */
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0x0000ffff);
	a->w[3] = v4;
}

static __always_inline int lb_addr_eq(const union lb_addr *a, const union lb_addr *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

static __always_inline __u32 lb_parse_ports(struct __sk_buff *skb, __u32 off, struct lb_pkt *pkt)
{
	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr th;

		if (!lb_within(pkt, off, sizeof(th)) || bpf_skb_load_bytes(skb, off, &th, sizeof(th)) < 0 ||
		    th.doff < 5)
			return LB_REASON_PASS_MALFORMED;
		pkt->flow.sport = th.source;
		pkt->flow.dport = th.dest;
		pkt->tcp_flags = ((__u8 *)&th)[13];
		return LB_CANDIDATE;
	}
	if (pkt->flow.proto == IPPROTO_UDP) {
		struct udphdr uh;

		if (!lb_within(pkt, off, sizeof(uh)) || bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)) < 0)
			return LB_REASON_PASS_MALFORMED;
		pkt->flow.sport = uh.source;
		pkt->flow.dport = uh.dest;
		return LB_CANDIDATE;
	}
	return LB_REASON_PASS_UNSUPPORTED;
}

/* lb_quoted_ports reads the ports of a packet quoted in an ICMP error and
 * stores them reversed: the quoted packet went VIP -> client (a reply the
 * backend sent), the flow we track is client -> VIP. */
static __always_inline __u32 lb_quoted_ports(struct __sk_buff *skb, __u32 off, struct lb_pkt *pkt)
{
	__be16 ports[2];

	if (pkt->flow.proto != IPPROTO_TCP && pkt->flow.proto != IPPROTO_UDP)
		return LB_REASON_PASS_ICMP;
	/* RFC 792/4443: at least 8 bytes of the quoted L4 header are present. */
	if (!lb_within(pkt, off, sizeof(ports)) || bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
		return LB_REASON_PASS_MALFORMED;
	pkt->flow.sport = ports[1];
	pkt->flow.dport = ports[0];
	pkt->kind = LB_PKT_ICMP_ERROR;
	return LB_CANDIDATE;
}

static __always_inline int lb4_icmp_is_error(__u8 type)
{
	return type == 3 /* dest unreachable, incl. frag needed */ || type == 11 /* time exceeded */ ||
	       type == 12 /* parameter problem */;
}

static __always_inline __u32 lb4_parse_icmp(struct __sk_buff *skb, __u32 off, struct lb_pkt *pkt)
{
	struct lb_icmphdr ih;
	struct iphdr in;
	union lb_addr outer_dst = pkt->flow.daddr;

	if (!lb_within(pkt, off, sizeof(ih)) || bpf_skb_load_bytes(skb, off, &ih, sizeof(ih)) < 0)
		return LB_REASON_PASS_MALFORMED;
	if (!lb4_icmp_is_error(ih.type))
		return LB_REASON_PASS_ICMP;
	off += sizeof(ih);
	if (bpf_skb_load_bytes(skb, off, &in, sizeof(in)) < 0 || in.version != 4 || in.ihl < 5)
		return LB_REASON_PASS_MALFORMED;
	if (bpf_ntohs(in.frag_off) & LB_IP_OFFSET)
		return LB_REASON_PASS_ICMP; /* quotes a non-first fragment: no ports */
	lb4_addr(&pkt->flow.saddr, in.daddr);
	lb4_addr(&pkt->flow.daddr, in.saddr);
	/* The error goes to the quoted packet's source, our VIP; anything else
	 * is not about a flow of ours. */
	if (!lb_addr_eq(&pkt->flow.daddr, &outer_dst))
		return LB_REASON_PASS_ICMP;
	pkt->flow.proto = in.protocol;
	return lb_quoted_ports(skb, off + in.ihl * 4, pkt);
}

static __always_inline __u32 lb4_parse(struct __sk_buff *skb, __u32 off, struct lb_pkt *pkt)
{
	struct iphdr ip;
	__u32 hlen, tot;
	__u16 frag;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return LB_REASON_PASS_MALFORMED;
	hlen = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	/* tot_len 0 is legal only for a BIG TCP GRO super-packet (more than
	 * 64 KiB, several segments): then the length is the skb's. */
	if (!tot && skb->gso_segs > 1)
		tot = skb->len - off;
	if (ip.version != 4 || hlen < sizeof(ip) || tot < hlen || off + tot > skb->len)
		return LB_REASON_PASS_MALFORMED;
	pkt->end = off + tot;
	lb4_addr(&pkt->flow.saddr, ip.saddr);
	lb4_addr(&pkt->flow.daddr, ip.daddr);
	pkt->flow.proto = ip.protocol;
	off += hlen;

	frag = bpf_ntohs(ip.frag_off);
	if (frag & (LB_IP_MF | LB_IP_OFFSET)) {
		if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
			return LB_REASON_PASS_UNSUPPORTED;
		pkt->kind = LB_PKT_FRAGMENT;
		pkt->frag_id = (__be32)ip.id;
		if (frag & LB_IP_OFFSET)
			return LB_CANDIDATE; /* later fragment: ports from lb_frags */
		pkt->frag_first = 1;
	}
	if (ip.protocol == IPPROTO_ICMP)
		return lb4_parse_icmp(skb, off, pkt);
	return lb_parse_ports(skb, off, pkt);
}

static __always_inline int lb6_icmp_is_error(__u8 type)
{
	return type >= 1 && type <= 4; /* unreachable, packet too big, time exceeded, param problem */
}

static __always_inline __u32 lb6_parse_icmp(struct __sk_buff *skb, __u32 off, struct lb_pkt *pkt)
{
	struct lb_icmphdr ih;
	struct ipv6hdr in;
	union lb_addr outer_dst = pkt->flow.daddr;

	if (!lb_within(pkt, off, sizeof(ih)) || bpf_skb_load_bytes(skb, off, &ih, sizeof(ih)) < 0)
		return LB_REASON_PASS_MALFORMED;
	if (!lb6_icmp_is_error(ih.type))
		return LB_REASON_PASS_ICMP;
	off += sizeof(ih);
	if (bpf_skb_load_bytes(skb, off, &in, sizeof(in)) < 0 || in.version != 6)
		return LB_REASON_PASS_MALFORMED;
	__builtin_memcpy(&pkt->flow.saddr, &in.daddr, 16);
	__builtin_memcpy(&pkt->flow.daddr, &in.saddr, 16);
	if (!lb_addr_eq(&pkt->flow.daddr, &outer_dst))
		return LB_REASON_PASS_ICMP;
	/* Replies from a backend carry no extension headers in practice; a
	 * quoted packet with one is passed to the host. */
	pkt->flow.proto = in.nexthdr;
	return lb_quoted_ports(skb, off + sizeof(in), pkt);
}

/* lb6_skip_exthdrs walks extension headers; on return *nh is the first
 * non-extension header and *off its offset. */
static __always_inline __u32 lb6_skip_exthdrs(struct __sk_buff *skb, __u32 *off, __u8 *nh, struct lb_pkt *pkt)
{
	__u8 hdr[8];
	__u16 frag;

#pragma unroll
	for (int i = 0; i < LB6_MAX_EXTHDRS; i++) {
		switch (*nh) {
		case LB6_NEXTHDR_ROUTING:
			if (bpf_skb_load_bytes(skb, *off, hdr, 4) < 0)
				return LB_REASON_PASS_MALFORMED;
			/* Segments left: the VIP is a waypoint, not the destination. */
			if (hdr[3])
				return LB_REASON_PASS_UNSUPPORTED;
			*nh = hdr[0];
			*off += (hdr[1] + 1) * 8;
			break;
		case LB6_NEXTHDR_HOP:
		case LB6_NEXTHDR_DEST:
			/* Options are skipped by length, not validated: the
			 * backend's stack does that. */
			if (bpf_skb_load_bytes(skb, *off, hdr, 2) < 0)
				return LB_REASON_PASS_MALFORMED;
			*nh = hdr[0];
			*off += (hdr[1] + 1) * 8;
			break;
		case LB6_NEXTHDR_AUTH:
			if (bpf_skb_load_bytes(skb, *off, hdr, 2) < 0)
				return LB_REASON_PASS_MALFORMED;
			*nh = hdr[0];
			*off += (hdr[1] + 2) * 4;
			break;
		case LB6_NEXTHDR_FRAGMENT:
			if (bpf_skb_load_bytes(skb, *off, hdr, 8) < 0)
				return LB_REASON_PASS_MALFORMED;
			*nh = hdr[0];
			*off += 8;
			frag = ((__u16)hdr[2] << 8) | hdr[3];
			/* offset (bits 15..3) or M (bit 0); an atomic fragment
			 * (both zero, RFC 6946) is a whole packet. */
			if (frag & 0xfff9) {
				pkt->kind = LB_PKT_FRAGMENT;
				__builtin_memcpy(&pkt->frag_id, hdr + 4, 4);
				/* A later fragment's payload is no header:
				 * its ports come from lb_frags. The fragment
				 * header itself must lie inside the packet. */
				if (frag & 0xfff8)
					return *off > pkt->end ? LB_REASON_PASS_MALFORMED : LB_CANDIDATE;
				pkt->frag_first = 1;
			}
			break;
		default:
			return LB_CANDIDATE;
		}
		/* The header just skipped must end inside the IP packet. */
		if (*off > pkt->end)
			return LB_REASON_PASS_MALFORMED;
	}
	return LB_REASON_PASS_UNSUPPORTED;
}

static __always_inline __u32 lb6_parse(struct __sk_buff *skb, __u32 off, struct lb_pkt *pkt)
{
	struct ipv6hdr ip6;
	__u32 reason;
	__u16 plen;
	__u8 nh;

	if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
		return LB_REASON_PASS_MALFORMED;
	plen = bpf_ntohs(ip6.payload_len);
	/* payload_len 0 is legal only for a BIG TCP GRO super-packet (more
	 * than 64 KiB, several segments): then the length is the skb's. */
	if ((!plen && skb->gso_segs <= 1) || off + sizeof(ip6) + plen > skb->len)
		return LB_REASON_PASS_MALFORMED;
	pkt->end = plen ? off + sizeof(ip6) + plen : skb->len;
	__builtin_memcpy(&pkt->flow.saddr, &ip6.saddr, 16);
	__builtin_memcpy(&pkt->flow.daddr, &ip6.daddr, 16);
	off += sizeof(ip6);
	nh = ip6.nexthdr;

	reason = lb6_skip_exthdrs(skb, &off, &nh, pkt);
	if (reason != LB_CANDIDATE)
		return reason;
	pkt->flow.proto = nh;
	if (pkt->kind == LB_PKT_FRAGMENT) {
		if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
			return LB_REASON_PASS_UNSUPPORTED;
		if (!pkt->frag_first)
			return LB_CANDIDATE;
	}
	if (nh == LB_IPPROTO_ICMPV6)
		return lb6_parse_icmp(skb, off, pkt);
	return lb_parse_ports(skb, off, pkt);
}

/* lb_parse is the entry: Ethernet, one optional VLAN tag, then IP. */
static __always_inline __u32 lb_parse(struct __sk_buff *skb, struct lb_pkt *pkt)
{
	struct ethhdr eth;
	__be16 vlan[2]; /* TCI, encapsulated protocol */
	__be16 proto;
	__u32 off = sizeof(eth);

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return LB_REASON_PASS_MALFORMED;
	proto = eth.h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		if (bpf_skb_load_bytes(skb, off, vlan, sizeof(vlan)) < 0)
			return LB_REASON_PASS_MALFORMED;
		proto = vlan[1];
		off += sizeof(vlan);
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
			return LB_REASON_PASS_UNSUPPORTED;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return lb4_parse(skb, off, pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return lb6_parse(skb, off, pkt);
	return LB_REASON_PASS_NOT_IP;
}

/* lb_fast_ports reads the TCP or UDP header at l4 (direct access); len is
 * what the IP header says follows it. */
static __always_inline __u32 lb_fast_ports(void *l4, void *data_end, __u32 len, struct lb_pkt *pkt)
{
	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || len < sizeof(*th) || th->doff < 5)
			return LB_PARSE_SLOW;
		pkt->tcp_flags = ((__u8 *)th)[13];
	} else if (pkt->flow.proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || len < sizeof(*uh))
			return LB_PARSE_SLOW;
	} else {
		return LB_PARSE_SLOW;
	}
	/* Source and destination ports are the first four bytes of both. */
	__builtin_memcpy(&pkt->flow.sport, l4, 4);
	return LB_CANDIDATE;
}

/* lb_parse_fast parses the common case by direct packet access: no VLAN
 * tag in the bytes, IPv4 with a 20-byte header and no fragment bits, or
 * IPv6 with TCP/UDP right after its header, every header in linear data.
 * It returns LB_CANDIDATE, LB_REASON_PASS_NOT_IP for a frame that is
 * neither IP nor VLAN-tagged (the host's ARP and friends, cheaply), or
 * LB_PARSE_SLOW for anything else: lb_parse then gives the frame the
 * verdict and reason it always did. */
static __always_inline __u32 lb_parse_fast(struct __sk_buff *skb, struct lb_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 len = skb->len, tot;

	if ((void *)(eth + 1) > data_end)
		return LB_PARSE_SLOW;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || *(__u8 *)ip != 0x45 /* version 4, ihl 5 */ ||
		    ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET))
			return LB_PARSE_SLOW;
		tot = bpf_ntohs(ip->tot_len);
		if (tot < sizeof(*ip) || sizeof(*eth) + tot > len)
			return LB_PARSE_SLOW;
		pkt->end = sizeof(*eth) + tot;
		lb4_addr(&pkt->flow.saddr, ip->saddr);
		lb4_addr(&pkt->flow.daddr, ip->daddr);
		pkt->flow.proto = ip->protocol;
		return lb_fast_ports(ip + 1, data_end, tot - sizeof(*ip), pkt);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return LB_PARSE_SLOW;
		tot = bpf_ntohs(ip6->payload_len);
		if (!tot || sizeof(*eth) + sizeof(*ip6) + tot > len)
			return LB_PARSE_SLOW;
		pkt->end = sizeof(*eth) + sizeof(*ip6) + tot;
		__builtin_memcpy(&pkt->flow.saddr, &ip6->saddr, 16);
		__builtin_memcpy(&pkt->flow.daddr, &ip6->daddr, 16);
		pkt->flow.proto = ip6->nexthdr;
		return lb_fast_ports(ip6 + 1, data_end, tot, pkt);
	}
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD))
		return LB_PARSE_SLOW;
	return LB_REASON_PASS_NOT_IP; /* ARP, LLDP…: lb_parse says the same */
}

#endif /* LB_PARSE_H */
