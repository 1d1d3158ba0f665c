/* conntrack.h — the LRU flow table that keeps an established flow on its
 * backend across table changes. An entry is valid while it is younger than
 * its timeout and its backend slot still holds the same backend (cookie) in
 * state up or drain. An invalid entry is renewed in place when the packet
 * starts a new flow, else deleted so a later revival of the slot cannot
 * pull the flow back.
 *
 * TCP entries follow the client's half of the connection (the balancer never
 * sees the server's), as IPVS does for direct routing: SYN -> syn seen, its
 * ACK -> established, a FIN -> closing, a RST -> closed. Only established
 * entries count as active and live for the TCP timeout; the others get the
 * closing timeout. A SYN that finds a closing or closed entry is a new
 * connection reusing the ports and is scheduled afresh. An IPv4 flow of a
 * maglev or source service is tracked from its second packet instead
 * (sched.h lb_syn_late, lb_fc_commit below; the rules in lbd/datapath
 * doc.go), and lb_ct_recent spares its SYN the lookup when no entry of its
 * hash was written within a timeout, and the read of its flow cache slot
 * when no SYN of its hash left a choice pending within a pending choice's
 * life: a new flow's SYN then reads one line of per-flow state.
 *
 * Two maps: an IPv4 flow (both addresses IPv4-mapped) is kept in lb_ct4
 * under a 16-byte key, any other in lb_conntrack under the 40-byte lb_flow:
 * the kernel's hash and compare of the key were the largest part of a hit.
 * Each call site names its map, so the verifier inlines every lookup.
 *
 * Cost: a hit reads the coarse clock from a per-CPU cache (lb_now: no helper
 * call within a jiffy) and writes the entry only when its state changes or
 * its timestamp is a second old. An established IPv4 flow is usually found
 * in this CPU's part of the flow cache (lb_flow_cache: an inlined array read, where the
 * LRU hash lookup was half of a hit's cost); the cache only repeats what
 * the entry would answer, for at most the refresh interval, so the entry
 * is still looked up (recency, timestamp) about once a second per busy
 * flow and CPU, and keeps what the LRU does for flows in use.
 *
 * Cache coherence: a copy is valid under one generation, the sum of Go's
 * lb_config.ct_gen (bumped after Go deletes or writes entries) and the
 * program's lb_fc_gen_bpf (bumped when it deletes an IPv4 entry or renews
 * one onto another backend). The backend's cookie and state are checked on
 * every cached hit as on every LRU hit; a FIN or RST, a SYN, and IPv6
 * flows never use a copy. A SYN tracked late writes its choice into the
 * slot as pending (lb_fc_pend, under Go's generation only), and the flow's
 * next packet on that CPU makes the entry from it (lb_fc_commit). A FIN
 * seen on another CPU leaves this CPU's copy (established) answering for
 * up to a second: the same backend the closing entry names.
 */
#ifndef LB_CONNTRACK_H
#define LB_CONNTRACK_H

#include <linux/in.h>
#include "common.h"
#include "maps.h"
#include "parse.h"

/* lb_now is CLOCK_MONOTONIC_COARSE (what bpf_ktime_get_coarse_ns returns),
 * read through the helper once per jiffy and CPU only. */
static __always_inline __u64 lb_now(void)
{
	__u64 j = bpf_jiffies64();
	__u32 key = 0;
	struct lb_clock *c = bpf_map_lookup_elem(&lb_clock, &key);

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j) {
		c->coarse_ns = bpf_ktime_get_coarse_ns();
		c->jiffies = j;
	}
	return c->coarse_ns;
}

static __always_inline __u64 lb_ct_timeout(const struct lb_config *cfg, __u8 proto, __u8 state)
{
	if (proto != IPPROTO_TCP)
		return cfg->udp_timeout_ns;
	return state == LB_CT_ESTABLISHED ? cfg->tcp_timeout_ns : cfg->tcp_closing_timeout_ns;
}

/* lb_ct_next is the state after a client packet with TCP flags f. */
static __always_inline __u8 lb_ct_next(__u8 state, __u8 f)
{
	if (f & LB_TCP_RST)
		return LB_CT_CLOSED;
	if (f & LB_TCP_FIN)
		return state == LB_CT_CLOSED ? LB_CT_CLOSED : LB_CT_CLOSING;
	if (state == LB_CT_SYN_SEEN && (f & (LB_TCP_ACK | LB_TCP_SYN)) == LB_TCP_ACK)
		return LB_CT_ESTABLISHED;
	return state;
}

/* lb_first_state is the state of a flow's new entry made on a packet with
 * TCP flags f: a SYN's is syn seen, a later packet's what the SYN's entry
 * would have become (an ACK: established); UDP is always established. */
static __always_inline __u8 lb_first_state(__u8 proto, __u8 f)
{
	if (proto != IPPROTO_TCP)
		return LB_CT_ESTABLISHED;
	return lb_ct_next(LB_CT_SYN_SEEN, f);
}

/* lb_flow_is4: both addresses IPv4-mapped, so the flow's entry is in lb_ct4.
 * (An IPv6 packet carrying IPv4-mapped addresses shares the IPv4 flow's
 * entry, as it always shared its lb_flow key.) */
static __always_inline int lb_flow_is4(const struct lb_flow *f)
{
	return (f->saddr.w[0] | f->saddr.w[1] | f->daddr.w[0] | f->daddr.w[1]) == 0 &&
	       f->saddr.w[2] == bpf_htonl(0x0000ffff) && f->daddr.w[2] == bpf_htonl(0x0000ffff);
}

/* lb_keep stops clang from merging the lb_ct4 and lb_conntrack calls of a
 * helper into one call on a chosen map pointer: the verifier then cannot
 * tell the map, and falls back from the inlined lookup to the generic
 * helper (an indirect call). Applied on the IPv4 branch only, so the two
 * tails differ. */
#define lb_keep(v) asm volatile("" : "+r"(v))

static __always_inline void lb_ct4_key(const struct lb_flow *f, struct lb_ct4_key *k)
{
	k->saddr = f->saddr.w[3];
	k->daddr = f->daddr.w[3];
	k->sport = f->sport;
	k->dport = f->dport;
	k->proto = f->proto;
}

/* When this program was loaded onto conntrack maps an earlier program
 * wrote (CLOCK_MONOTONIC_COARSE ns, set by lbd before load), 0 for fresh
 * maps: until every entry's timeout has passed since, an entry may exist
 * that this program never marked in lb_ct_recent. */
const volatile __u64 lb_recent_since_ns = 0;
/* lb_ct_recent's size minus one (a power of two), set by lbd before load. */
const volatile __u32 lb_recent_mask = LB_RECENT_SLOTS - 1;

/* lb_ct4_words is an lb_ct4 key as the two u64 words the flow cache and
 * lb_ct_recent hash (its padding zero). */
static __always_inline void lb_ct4_words(const struct lb_ct4_key *k, __u64 *k0, __u64 *k1)
{
	*k0 = (__u64)k->saddr | (__u64)k->daddr << 32;
	*k1 = (__u64)k->sport | (__u64)k->dport << 16 | (__u64)k->proto << 32;
}

/* lb_recent_slot is the lb_ct_recent slot of the flow whose key words are
 * k0 and k1 (lb_ct4_words; a flow cache key's generation bits in k1 are
 * not hashed). */
static __always_inline struct lb_recent *lb_recent_slot(__u64 k0, __u64 k1)
{
	__u32 slot = (__u32)((((k0 * 0xc2b2ae3d27d4eb4fULL) ^ (k1 & LB_FC_FLOW_BITS)) * 0x9e3779b97f4a7c15ULL) >> 32) &
		     lb_recent_mask;
	__u32 line = slot / LB_RECENT_PER_LINE;
	struct lb_recent_line *l = bpf_map_lookup_elem(&lb_ct_recent, &line);

	if (!l)
		return NULL;
	return &l->slot[slot % LB_RECENT_PER_LINE];
}

/* lb_recent_tick is now as a slot holds it: 1..255, counting units of
 * 2^LB_RECENT_SHIFT ns modulo 255; 0 is a slot never written. */
static __always_inline __u8 lb_recent_tick(__u64 now)
{
	return (__u8)((now >> LB_RECENT_SHIFT) % 255) + 1;
}

/* lb_recent_mark records that an lb_ct4 entry of k is written now. Called
 * before the entry is: the mark is never older than any entry's time. */
static __always_inline void lb_recent_mark(const struct lb_ct4_key *k, __u64 now)
{
	struct lb_recent *r;
	__u64 k0, k1;

	lb_ct4_words(k, &k0, &k1);
	r = lb_recent_slot(k0, k1);

	if (r)
		r->entry = lb_recent_tick(now);
}

/* lb_recent_due: refreshing an entry last written at then must mark its
 * lb_ct_recent slot, unless then falls in now's tick and this program
 * wrote then: its slot was marked in that tick when then was written (a
 * mark precedes its entry's write; another flow sharing the slot only
 * writes a later tick, or one tick earlier from a CPU whose cached clock
 * lags, which the readers' two ticks of slack absorb), so every busy
 * flow's slot is written once a tick, not once a second. An entry the
 * earlier program wrote may fall in now's tick unmarked: until two ticks
 * after the longest timeout since load every refresh marks. That holds
 * while this program is attached within a tick plus that timeout of its
 * load (a start takes seconds). */
static __always_inline int lb_recent_due(const struct lb_config *cfg, __u64 then, __u64 now)
{
	__u64 t = cfg->tcp_timeout_ns > cfg->tcp_closing_timeout_ns ? cfg->tcp_timeout_ns : cfg->tcp_closing_timeout_ns;

	if (lb_recent_since_ns && (__s64)(now - lb_recent_since_ns) <= (__s64)(t + (2ULL << LB_RECENT_SHIFT)))
		return 1;
	return (then >> LB_RECENT_SHIFT) != (now >> LB_RECENT_SHIFT);
}

/* lb_recent_within: tick v (0: never) is at most units old, modulo the
 * clock's wrap (a wrapped tick looks recent: conservative). A tick one
 * ahead of now's is recent too: another CPU's cached clock may cross a
 * tick a jiffy before this one's. */
static __always_inline int lb_recent_within(__u8 v, __u64 now, __u64 units)
{
	__u64 age = (lb_recent_tick(now) + 255 - v) % 255;

	return v && (age <= units || age == 254);
}

/* lb_recent_maybe: k (slot r) may have an lb_ct4 entry that stands (0:
 * surely not, its slot was not written within the longest timeout a
 * standing entry, established or syn seen, lives). Conservative on every
 * doubt: timeouts longer than the slot's clock wraps, the first timeout
 * plus two ticks after loading onto an earlier program's maps (which
 * writes entries unmarked here until this program is attached: a start
 * attaches within seconds of the load), a slot shared with other flows. */
static __always_inline int lb_recent_maybe(const struct lb_recent *r, const struct lb_config *cfg, __u64 now)
{
	__u64 t = cfg->tcp_timeout_ns > cfg->tcp_closing_timeout_ns ? cfg->tcp_timeout_ns : cfg->tcp_closing_timeout_ns;
	__u64 units = (t >> LB_RECENT_SHIFT) + 2;

	if (units >= 254 || !r ||
	    (lb_recent_since_ns && (__s64)(now - lb_recent_since_ns) < (__s64)(t + (2ULL << LB_RECENT_SHIFT))))
		return 1;
	return lb_recent_within(r->entry, now, units);
}

/* lb_recent_pend_maybe: a SYN of slot r may have left a choice pending in
 * this CPU's flow cache that is still valid (0: surely not, so a SYN need
 * not read its slot, and writes it without a cache miss it waits for).
 * A pending choice lives the syn-seen timeout (lb_fc_pending) from its
 * SYN, which marked r before writing it; the flow cache is the program's
 * own, so nothing pending predates its marks. */
static __always_inline int lb_recent_pend_maybe(const struct lb_recent *r, const struct lb_config *cfg, __u64 now)
{
	__u64 units = (lb_ct_timeout(cfg, IPPROTO_TCP, LB_CT_SYN_SEEN) >> LB_RECENT_SHIFT) + 2;

	if (units >= 254 || !r)
		return 1;
	return lb_recent_within(r->pend, now, units);
}

/* The program's half of the flow cache generation (the other is Go's
 * lb_config.ct_gen): bumped when the program deletes an IPv4 entry or
 * renews one onto another backend, so that no CPU's cached copy outlives
 * the change. A global (.bss), so reading it is one load; each loaded
 * program has its own, as it has its own cache. */
__u32 lb_fc_gen_bpf;

static __always_inline void lb_fc_invalidate(void)
{
	__sync_fetch_and_add(&lb_fc_gen_bpf, 1);
}

/* lb_fc_gen is the current generation, in k1's padding bits (40-63). */
static __always_inline __u64 lb_fc_gen(const struct lb_config *cfg)
{
	return (__u64)((cfg->ct_gen + lb_fc_gen_bpf) & 0xffffff) << 40;
}

/* lb_fc_pkey is k1 of the flow's pending choice: under Go's generation
 * only. The program's own bumps retire copies of entries it deleted or
 * moved; a pending choice is no copy (its backend is checked when it is
 * used), and a backend going down, whose flows the program then renews
 * elsewhere, must not cancel every handshake in flight. */
static __always_inline __u64 lb_fc_pkey(__u64 k1, const struct lb_config *cfg)
{
	return (k1 & LB_FC_FLOW_BITS) | (__u64)(cfg->ct_gen & 0xffffff) << 40 | LB_FC_PENDING;
}

/* lb_fc_key is the flow cache key of an IPv4 flow's lb_ct4 key: the key's
 * two words, the generation in k1's padding bits. */
static __always_inline void lb_fc_key(const struct lb_ct4_key *k, const struct lb_config *cfg, __u64 *k0, __u64 *k1)
{
	lb_ct4_words(k, k0, k1);
	*k1 |= lb_fc_gen(cfg);
}

/* lb_fc_slot is the flow's cache entry on this CPU (any flow may be in it).
 * bpf_get_smp_processor_id is inlined by the verifier; a tc program runs
 * with migration disabled, so the CPU's entries are its own, as a per-CPU
 * value would be. */
static __always_inline struct lb_fc_entry *lb_fc_slot(__u64 k0, __u64 k1)
{
	__u32 slot = ((k0 ^ ((k1 & LB_FC_FLOW_BITS) * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL) >> (64 - LB_FC_BITS);

	slot += bpf_get_smp_processor_id() * LB_FC_SLOTS;

	return bpf_map_lookup_elem(&lb_flow_cache, &slot);
}

/* lb_backend_holds returns the backend in slot *id if it is still the one
 * an entry or a cached choice named (cookie: the slot was not reassigned)
 * and up or draining, else NULL: the flow can no longer go there. */
static __always_inline struct lb_backend *lb_backend_holds(const __u32 *id, __u32 cookie)
{
	struct lb_backend *be = bpf_map_lookup_elem(&lb_backends, id);

	if (!be || be->cookie != cookie || (be->state != LB_BACKEND_UP && be->state != LB_BACKEND_DRAIN))
		return NULL;
	return be;
}

/* lb_fc_copy returns the backend of a cached copy of the flow's entry
 * (proto: its protocol), or NULL when the LRU path must decide: another
 * flow in the slot, another generation, the copy older than
 * LB_CT_REFRESH_NS (the entry's timestamp is due: the LRU path refreshes it
 * and its recency), or the backend no longer the same one up or draining.
 * What it returns is what the LRU path would return, which writes nothing
 * in that case either. */
static __always_inline struct lb_backend *lb_fc_copy(const struct lb_fc_entry *fc, __u64 k0, __u64 k1, __u8 proto,
						     const struct lb_config *cfg, __u64 now, __u32 *id)
{
	struct lb_backend *be;
	__s64 age;

	if (fc->k0 != k0 || fc->k1 != k1)
		return NULL;
	age = (__s64)(now - fc->last_seen_ns);
	if (age > (__s64)LB_CT_REFRESH_NS || age >= (__s64)lb_ct_timeout(cfg, proto, LB_CT_ESTABLISHED))
		return NULL;
	be = lb_backend_holds(&fc->backend_id, fc->cookie);
	if (!be)
		return NULL;
	*id = fc->backend_id;
	return be;
}

/* lb_fc_hit is lb_fc_copy for a parsed packet: a FIN or RST takes the LRU
 * path (the entry's state changes). */
static __always_inline struct lb_backend *lb_fc_hit(const struct lb_fc_entry *fc, __u64 k0, __u64 k1,
						    const struct lb_pkt *pkt, const struct lb_config *cfg, __u64 now,
						    __u32 *id)
{
	if (pkt->flow.proto == IPPROTO_TCP && (pkt->tcp_flags & (LB_TCP_FIN | LB_TCP_RST)))
		return NULL;
	return lb_fc_copy(fc, k0, k1, pkt->flow.proto, cfg, now, id);
}

/* lb_fc_keep records a valid entry after the LRU path or a commit: an
 * established one is copied into the slot, any other state clears the slot
 * if it holds the flow, copy or pending (its next packets take the LRU
 * path). */
static __always_inline void lb_fc_keep(struct lb_fc_entry *fc, __u64 k0, __u64 k1, const struct lb_ct_entry *ct)
{
	if (ct->state != LB_CT_ESTABLISHED) {
		if (fc->k0 == k0 && (fc->k1 & LB_FC_FLOW_BITS) == (k1 & LB_FC_FLOW_BITS))
			fc->k1 = 0; /* proto 0: matches no flow */
		return;
	}
	/* The key last, over a cleared k1: a copy is never read with the
	 * key of one flow and the backend of another. */
	fc->k1 = 0;
	asm volatile("" ::: "memory"); /* keep the stores in this order */
	fc->last_seen_ns = ct->last_seen_ns;
	*(__u64 *)&fc->backend_id = *(const __u64 *)&ct->backend_id; /* backend_id, cookie */
	asm volatile("" ::: "memory");
	fc->k0 = k0;
	fc->k1 = k1;
}

/* lb_fc_pending returns the backend of the choice a SYN left pending for
 * the flow in this CPU's slot, or NULL: nothing pending for it, pending
 * longer than a SYN's entry would have lived (the closing timeout), or the
 * backend no longer the same one up or draining. */
static __always_inline struct lb_backend *lb_fc_pending(const struct lb_fc_entry *fc, __u64 k0, __u64 k1,
							const struct lb_config *cfg, __u64 now)
{
	if (fc->k0 != k0 || fc->k1 != lb_fc_pkey(k1, cfg))
		return NULL;
	if ((__s64)(now - fc->last_seen_ns) >= (__s64)lb_ct_timeout(cfg, IPPROTO_TCP, LB_CT_SYN_SEEN))
		return NULL;
	return lb_backend_holds(&fc->backend_id, fc->cookie);
}

/* lb_fc_pend records, in the flow's slot fc on this CPU, the backend chosen
 * for the SYN of an IPv4 flow that gets no entry yet (sched.h: the flow is
 * tracked from its second packet), under k1 = lb_fc_pkey. Written like a
 * copy, key last. */
static __always_inline void lb_fc_pend(struct lb_fc_entry *fc, __u64 k0, __u64 k1, __u64 now, __u32 id,
				       __u32 cookie)
{
	fc->k1 = 0;
	asm volatile("" ::: "memory");
	fc->last_seen_ns = now;
	fc->backend_id = id;
	fc->cookie = cookie;
	asm volatile("" ::: "memory");
	fc->k0 = k0;
	fc->k1 = k1;
}

static __always_inline struct lb_ct_counters *lb_ct_counters(void);

/* lb_ct_renew rewrites in place an entry that no longer stands (closing,
 * closed, expired, its backend gone) with ct: a new connection on reused
 * ports. Backend and cookie go in one store, so that no reader pairs one
 * with the other's old value; if the backend changed, other CPUs' copies
 * of an IPv4 entry go (is4). Counted renewed (c may be NULL). */
static __always_inline void lb_ct_renew(struct lb_ct_entry *old, const struct lb_ct_entry *ct, int is4,
					struct lb_ct_counters *c)
{
	if (is4 && *(__u64 *)&old->backend_id != *(const __u64 *)&ct->backend_id)
		lb_fc_invalidate();
	*(__u64 *)&old->backend_id = *(const __u64 *)&ct->backend_id;
	old->state = ct->state;
	old->last_seen_ns = ct->last_seen_ns;
	if (c)
		c->renewed++;
}

/* lb_ct_standing returns the backend of a TCP entry that stands: valid and
 * not closing, so it keeps its flow against a SYN on its ports (a spoof
 * must not move it; a client reusing ports the balancer never saw closed
 * gets its whole handshake on that backend). NULL: it does not stand. */
static __always_inline struct lb_backend *lb_ct_standing(const struct lb_ct_entry *ct, const struct lb_config *cfg,
							 __u64 now)
{
	if (ct->state >= LB_CT_CLOSING ||
	    (__s64)(now - ct->last_seen_ns) >= (__s64)lb_ct_timeout(cfg, IPPROTO_TCP, ct->state))
		return NULL;
	return lb_backend_holds(&ct->backend_id, ct->cookie);
}

/* lb_fc_commit tracks a TCP flow whose SYN left its choice pending in this
 * CPU's slot: the flow's next packet inserts the entry (the SYN's backend,
 * the state the SYN's entry would now have) and makes the slot its copy.
 * NULL: nothing pending (lb_fc_pending), or the flow already has an entry
 * that stands (lb_ct_standing: made meanwhile on another CPU): the LRU
 * path then decides. An entry that
 * does not stand (closing, closed, expired: the ports reused) is renewed
 * in place with the pending choice. A RST, an ICMP error and a later
 * fragment follow the pending choice without tracking it (a RST clears it:
 * nothing left to track). */
static __always_inline struct lb_backend *lb_fc_commit(struct lb_fc_entry *fc, __u64 k0, __u64 k1,
						       const struct lb_ct4_key *k, const struct lb_pkt *pkt,
						       const struct lb_config *cfg, __u64 now, __u32 *id)
{
	struct lb_backend *be = lb_fc_pending(fc, k0, k1, cfg, now);
	struct lb_ct_entry ct = {}, *old;
	struct lb_ct_counters *c;

	if (!be)
		return NULL;
	*id = fc->backend_id;
	if (pkt->kind != LB_PKT_FLOW || pkt->flow.proto != IPPROTO_TCP)
		return be;
	if (pkt->tcp_flags & LB_TCP_RST) {
		fc->k1 = 0;
		return be;
	}
	ct.last_seen_ns = now;
	ct.backend_id = fc->backend_id;
	ct.cookie = fc->cookie;
	ct.state = lb_first_state(IPPROTO_TCP, pkt->tcp_flags);
	c = lb_ct_counters();
	lb_recent_mark(k, now);
	if (bpf_map_update_elem(&lb_ct4, k, &ct, BPF_NOEXIST) == 0) {
		if (c)
			c->inserted++;
	} else {
		old = bpf_map_lookup_elem(&lb_ct4, k);
		lb_keep(old);
		if (!old || lb_ct_standing(old, cfg, now)) {
			fc->k1 = 0;
			return NULL;
		}
		lb_ct_renew(old, &ct, 1, c);
	}
	lb_fc_keep(fc, k0, k1, &ct);
	return be;
}

static __always_inline void lb_ct_delete(const struct lb_flow *flow)
{
	if (lb_flow_is4(flow)) {
		struct lb_ct4_key k = {};

		long err;

		lb_ct4_key(flow, &k);
		err = bpf_map_delete_elem(&lb_ct4, &k);
		lb_keep(err);
		lb_fc_invalidate();
		return;
	}
	bpf_map_delete_elem(&lb_conntrack, flow);
}

static __always_inline long lb_ct_add(const struct lb_flow *flow, const struct lb_ct_entry *ct)
{
	if (lb_flow_is4(flow)) {
		struct lb_ct4_key k = {};

		long err;

		lb_ct4_key(flow, &k);
		lb_recent_mark(&k, ct->last_seen_ns);
		err = bpf_map_update_elem(&lb_ct4, &k, ct, BPF_ANY);
		lb_keep(err);
		return err;
	}
	return bpf_map_update_elem(&lb_conntrack, flow, ct, BPF_ANY);
}

/* lb_ct_lookup returns the flow's backend and its id, or NULL. new_syn: the
 * packet is a SYN without ACK (a closing entry then yields). An entry found
 * but no longer valid is returned in *stale: the caller renews it in place
 * for a new flow (lb_ct_insert) or deletes it (lb_ct_drop). An IPv4 packet
 * that is not a new SYN tries this CPU's flow cache first. */
static __always_inline struct lb_backend *lb_ct_lookup(const struct lb_pkt *pkt, const struct lb_config *cfg,
						       __u64 now, int new_syn, __u32 *id,
						       struct lb_ct_entry **stale)
{
	const struct lb_flow *flow = &pkt->flow;
	int is4 = lb_flow_is4(flow);
	struct lb_fc_entry *fc = NULL;
	struct lb_ct4_key k = {};
	struct lb_ct_entry *ct;
	struct lb_backend *be;
	__u64 k0 = 0, k1 = 0;
	__s64 age;
	__u8 state;

	if (is4) {
		lb_ct4_key(flow, &k);
		if (!new_syn) {
			/* The generation is read before the LRU lookup: a copy
			 * made from an entry deleted meanwhile is born stale. */
			lb_fc_key(&k, cfg, &k0, &k1);
			fc = lb_fc_slot(k0, k1);
			if (fc) {
				be = lb_fc_hit(fc, k0, k1, pkt, cfg, now, id);
				if (!be)
					be = lb_fc_commit(fc, k0, k1, &k, pkt, cfg, now, id);
				if (be)
					return be;
			}
		}
		ct = bpf_map_lookup_elem(&lb_ct4, &k);
		lb_keep(ct);
	} else {
		ct = bpf_map_lookup_elem(&lb_conntrack, flow);
	}
	if (!ct)
		return NULL;
	state = ct->state;
	/* Signed: another CPU's cached clock may be a tick ahead of ours, so
	 * an entry can look younger than 0. >=: a timeout of 0 expires every
	 * entry (benchmarks use it). */
	age = (__s64)(now - ct->last_seen_ns);
	if (age >= (__s64)lb_ct_timeout(cfg, flow->proto, state))
		goto invalid;
	if (new_syn && state >= LB_CT_CLOSING)
		goto invalid;
	be = lb_backend_holds(&ct->backend_id, ct->cookie);
	if (!be)
		goto invalid;
	if (flow->proto == IPPROTO_TCP) {
		__u8 next = lb_ct_next(state, pkt->tcp_flags);

		if (next != state) {
			ct->state = next;
			age = LB_CT_REFRESH_NS + 1; /* refresh below */
		}
	}
	if (age > (__s64)LB_CT_REFRESH_NS) {
		if (is4 && lb_recent_due(cfg, ct->last_seen_ns, now))
			lb_recent_mark(&k, now);
		ct->last_seen_ns = now;
	}
	if (fc)
		lb_fc_keep(fc, k0, k1, ct);
	*id = ct->backend_id;
	return be;
invalid:
	*stale = ct;
	return NULL;
}

static __always_inline struct lb_ct_counters *lb_ct_counters(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&lb_ct_stats, &key);
}

/* lb_ct_drop deletes a stale entry, so a later revival of its backend slot
 * cannot pull the flow back. */
static __always_inline void lb_ct_drop(const struct lb_flow *flow, struct lb_ct_entry *stale)
{
	struct lb_ct_counters *c;

	if (!stale)
		return;
	lb_ct_delete(flow);
	c = lb_ct_counters();
	if (c)
		c->dropped++;
}

/* lb_ct_insert records a new flow: in place over its own stale entry (no
 * delete and insert: a client reusing ports, an expired flow coming back),
 * else as a new entry. In place, backend and cookie are one 8-byte store,
 * so a reader on another CPU sees the old pair or the new one. */
static __always_inline void lb_ct_insert(const struct lb_flow *flow, __u32 id, const struct lb_backend *be, __u64 now,
					 __u8 state, struct lb_ct_entry *stale)
{
	struct lb_ct_entry ct = {
		.last_seen_ns = now,
		.backend_id = id,
		.cookie = be->cookie,
		.state = state,
	};

	struct lb_ct_counters *c = lb_ct_counters();

	if (stale) {
		int is4 = lb_flow_is4(flow);

		if (is4) {
			struct lb_ct4_key k = {};

			lb_ct4_key(flow, &k);
			lb_recent_mark(&k, now);
		}
		lb_ct_renew(stale, &ct, is4, c);
		return;
	}
	if (lb_ct_add(flow, &ct) == 0 && c)
		c->inserted++;
}

#endif /* LB_CONNTRACK_H */
