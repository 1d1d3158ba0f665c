// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* pktgen.c — a packet generator for measuring the balancer's program while
 * its CPU is kept busy (integration/pktgen, dsrlb-bench -gen), never
 * attached by lbd:
 *
 *   pktgen_tx    run by BPF_PROG_TEST_RUN in live-frames mode on the
 *                client's interface: each run takes the template frame
 *                (Ethernet + IPv4 + TCP, no options), gives it the next
 *                flow's source address and port and TCP flags, and returns
 *                XDP_TX, which the kernel turns into a transmit on that
 *                interface. The frame is written in full every run: its
 *                page comes back from the path it took with whatever was
 *                written into it there (the balancer's MAC rewrite).
 *   pktgen_pass  XDP_PASS, attached to the far end of the client's veth:
 *                a veth delivers XDP frames only to a peer running NAPI,
 *                which an XDP program gives it.
 *   pktgen_drop  tc, attached to a backend's ingress: counts and drops the
 *                generator's frames (IPv4 from its source /24), so that a
 *                backend spends nothing on them, and lets everything else
 *                (health checks, ARP) continue.
 *
 * Mixes (pktgen_mix):
 *   PKTGEN_ESTABLISHED  pktgen_flows flows in turn, pktgen_burst frames of
 *                       a flow in a row (a TCP sender's burst); each flow's
 *                       first frame is its SYN, every later one an ACK: a
 *                       steady stream of established flows after a
 *                       handshake. With the state's handshake flag set
 *                       instead: each flow's SYN and its ACK, flow after
 *                       flow (Go opens a block of flows so before it
 *                       measures their steady stream).
 *   PKTGEN_CONNECTIONS  a new connection every five frames — SYN, ACK,
 *                       PSH|ACK, FIN|ACK, ACK — on a 5-tuple not used again
 *                       for 256 × 64,000 connections.
 * Flow n has source address pktgen_src_net + n / 64,000 and source port
 * 1,024 + n % 64,000; an established flow's n is counted from the state's
 * base. One generator at a time: the sequence is not atomic.
 * The IPv4 checksum is recomputed, the TCP checksum left as the template's:
 * nothing on the path checks it (the backend drops the frame at tc ingress).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#define PKTGEN_ESTABLISHED 0
#define PKTGEN_CONNECTIONS 1
#define PKTGEN_PORTS 64000
#define PKTGEN_SOURCES 256

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* Settings, written before load (pktgen.Load). */
const volatile __u32 pktgen_mix = PKTGEN_ESTABLISHED;
const volatile __u32 pktgen_flows = 1;
const volatile __u32 pktgen_burst = 1;
const volatile __be32 pktgen_src_net = 0;
/* Destination then source MAC, as three words. */
const volatile __u32 pktgen_macs[3] = {0};

/* What the next frame is, set by Go between runs. */
struct pktgen_state {
	__u64 seq;       /* the next frame's sequence number */
	__u32 base;      /* PKTGEN_ESTABLISHED: the first flow's number */
	__u32 handshake; /* PKTGEN_ESTABLISHED: SYN, ACK of each flow in turn */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pktgen_state);
	__uint(max_entries, 1);
} pktgen_seq SEC(".maps");

/* Frames pktgen_drop dropped, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} pktgen_dropped SEC(".maps");

#define FRAME_LEN (sizeof(struct ethhdr) + 20 + 20)

static __always_inline __u16 ip_csum(const __u16 *w)
{
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

SEC("xdp")
int pktgen_tx(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *eth = (void *)(long)ctx->data;
	__u8 *ip = eth + sizeof(struct ethhdr), *tcp = ip + 20;
	struct pktgen_state *st;
	__u32 zero = 0, flow;
	__u8 flags;
	__u64 n;

	if ((void *)(eth + FRAME_LEN) > data_end)
		return XDP_ABORTED;
	st = bpf_map_lookup_elem(&pktgen_seq, &zero);
	if (!st)
		return XDP_ABORTED;
	n = st->seq++;
	if (pktgen_mix == PKTGEN_CONNECTIONS) {
		flow = (n / 5) % (PKTGEN_PORTS * PKTGEN_SOURCES);
		switch (n % 5) {
		case 0:
			flags = TCP_SYN;
			break;
		case 2:
			flags = TCP_PSH | TCP_ACK;
			break;
		case 3:
			flags = TCP_FIN | TCP_ACK;
			break;
		default:
			flags = TCP_ACK;
		}
	} else if (st->handshake) {
		flow = (st->base + (n / 2) % pktgen_flows) % (PKTGEN_PORTS * PKTGEN_SOURCES);
		flags = n % 2 ? TCP_ACK : TCP_SYN;
	} else {
		__u64 b = n / pktgen_burst;

		flow = (st->base + b % pktgen_flows) % (PKTGEN_PORTS * PKTGEN_SOURCES);
		flags = b < pktgen_flows && n % pktgen_burst == 0 ? TCP_SYN : TCP_ACK;
	}
	((__u32 *)eth)[0] = pktgen_macs[0];
	((__u32 *)eth)[1] = pktgen_macs[1];
	((__u32 *)eth)[2] = pktgen_macs[2];
	*(__be32 *)(ip + 12) = pktgen_src_net | __builtin_bswap32(flow / PKTGEN_PORTS);
	*(__u16 *)(ip + 10) = 0;
	*(__u16 *)(ip + 10) = ip_csum((const __u16 *)ip);
	*(__be16 *)tcp = __builtin_bswap16(1024 + flow % PKTGEN_PORTS);
	tcp[13] = flags;
	return XDP_TX;
}

SEC("xdp")
int pktgen_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int pktgen_drop(struct __sk_buff *skb)
{
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = (void *)(long)skb->data;
	__u8 *ip = (void *)(eth + 1);
	__u32 zero = 0;
	__u64 *n;

	if ((void *)(ip + 20) > data_end || eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return TC_ACT_UNSPEC;
	if ((*(__be32 *)(ip + 12) & __builtin_bswap32(0xffffff00)) != pktgen_src_net)
		return TC_ACT_UNSPEC;
	n = bpf_map_lookup_elem(&pktgen_dropped, &zero);
	if (n)
		*n += 1;
	return TC_ACT_SHOT;
}

char __license[] SEC("license") = "Dual BSD/GPL";
