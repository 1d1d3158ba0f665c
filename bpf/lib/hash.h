/* hash.h — Bob Jenkins' lookup3 hash as the Linux kernel's jhash2, with the
 * fixed LB_HASH_SEED. lbd/datapath's Go model (hash.go) mirrors it word for
 * word, so tests predict which backend a flow reaches.
 */
#ifndef LB_HASH_H
#define LB_HASH_H

#include "common.h"

#define LB_JHASH_INITVAL 0xdeadbeef

static __always_inline __u32 lb_rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

#define lb_jhash_mix(a, b, c)                                                                      \
	{                                                                                          \
		a -= c; a ^= lb_rol32(c, 4);  c += b;                                              \
		b -= a; b ^= lb_rol32(a, 6);  a += c;                                              \
		c -= b; c ^= lb_rol32(b, 8);  b += a;                                              \
		a -= c; a ^= lb_rol32(c, 16); c += b;                                              \
		b -= a; b ^= lb_rol32(a, 19); a += c;                                              \
		c -= b; c ^= lb_rol32(b, 4);  b += a;                                              \
	}

#define lb_jhash_final(a, b, c)                                                                    \
	{                                                                                          \
		c ^= b; c -= lb_rol32(b, 14);                                                      \
		a ^= c; a -= lb_rol32(c, 11);                                                      \
		b ^= a; b -= lb_rol32(a, 25);                                                      \
		c ^= b; c -= lb_rol32(b, 16);                                                      \
		a ^= c; a -= lb_rol32(c, 4);                                                       \
		b ^= a; b -= lb_rol32(a, 14);                                                      \
		c ^= b; c -= lb_rol32(b, 24);                                                      \
	}

/* lb_jhash2 hashes len u32 words (len a compile-time constant, so the
 * loop unrolls). */
static __always_inline __u32 lb_jhash2(const __u32 *k, const __u32 len, __u32 seed)
{
	__u32 a, b, c;
	__u32 n = len;

	a = b = c = LB_JHASH_INITVAL + (len << 2) + seed;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (n <= 3)
			break;
		a += k[0];
		b += k[1];
		c += k[2];
		lb_jhash_mix(a, b, c);
		n -= 3;
		k += 3;
	}
	switch (n) {
	case 3:
		c += k[2];
		/* fallthrough */
	case 2:
		b += k[1];
		/* fallthrough */
	case 1:
		a += k[0];
		lb_jhash_final(a, b, c);
		break;
	}
	return c;
}

/* lb_hash_flow hashes the whole flow (addresses, ports, protocol): the
 * maglev scheduler's key. Fragments hash with both ports zero. */
static __always_inline __u32 lb_hash_flow(const struct lb_flow *flow)
{
	return lb_jhash2((const __u32 *)flow, sizeof(*flow) / 4, LB_HASH_SEED);
}

/* lb_hash_source hashes the client address only: the source scheduler's key. */
static __always_inline __u32 lb_hash_source(const union lb_addr *saddr)
{
	return lb_jhash2((const __u32 *)saddr, 4, LB_HASH_SEED);
}

#endif /* LB_HASH_H */
