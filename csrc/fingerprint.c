/* fr_fingerprints (fastrnn.h): has a buffer changed between a forward and its backward? Compiled once,
 * for the baseline. */
#include <stdint.h>
#include <string.h>

#include "fastrnn.h"
#include "runtime.h"

/* A Fletcher-style checksum over 64-bit words, eight lanes wide: per lane, s1 = sum of the words and
 * s2 = sum of the running s1 (mod 2^64), i.e. each word weighted by its distance from the end of the
 * block. Every single change of a word changes s1; moving or swapping words changes s2. Two vector
 * additions per 64 bytes, so it runs at the speed the cache delivers. The bytes are cut into fixed
 * blocks of FR_FP_BLOCK, summed independently (in parallel, over all the buffers of one call), mixed
 * with their index and added, so the result does not depend on the thread count. Not a
 * cryptographic hash: it detects changes, it does not resist an adversary. */
#define FR_FP_BLOCK ((int64_t)1 << 16)
#define FR_FP_PRIME 0x9E3779B97F4A7C15ull
static inline uint64_t fr_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

/* Two 64-bit lanes: the baseline's (SSE2) vector. The eight lanes are four of them, each its own
 * variable so that they stay in registers: as one 64-byte vector type, gcc kept them on the stack
 * at the baseline, and one core hashed two 768 KiB arrays in L2 at 12 GB/s (42 GB/s now; Sapphire
 * Rapids, 2026-12-02). */
typedef uint64_t fr_u64x2 __attribute__((vector_size(16)));

/* The fingerprint of block `block` (its first `bytes` bytes at p, bytes <= FR_FP_BLOCK). */
static uint64_t fr_fp_block(const unsigned char *p, int64_t bytes, uint64_t block)
{
    fr_u64x2 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    const int64_t nstripes = bytes / 64;
    for (int64_t s = 0; s < nstripes; s++) {
        fr_u64x2 w0, w1, w2, w3;
        memcpy(&w0, p + s * 64, 16);
        memcpy(&w1, p + s * 64 + 16, 16);
        memcpy(&w2, p + s * 64 + 32, 16);
        memcpy(&w3, p + s * 64 + 48, 16);
        a0 += w0, a1 += w1, a2 += w2, a3 += w3;
        b0 += a0, b1 += a1, b2 += a2, b3 += a3;
    }
    const uint64_t s1[8] = {a0[0], a0[1], a1[0], a1[1], a2[0], a2[1], a3[0], a3[1]};
    const uint64_t s2[8] = {b0[0], b0[1], b1[0], b1[1], b2[0], b2[1], b3[0], b3[1]};
    uint64_t tail[8] = {0};
    fr_copy(tail, p + nstripes * 64, (size_t)(bytes - nstripes * 64));
    uint64_t h = fr_mix(block + 1) ^ (uint64_t)bytes;
    for (int l = 0; l < 8; l++) h = fr_mix(fr_mix(h ^ s1[l]) ^ s2[l] ^ (tail[l] * FR_FP_PRIME + (uint64_t)l));
    return h;
}

static inline int64_t fr_fp_nblocks(int64_t bytes) { return bytes > 0 ? (bytes + FR_FP_BLOCK - 1) / FR_FP_BLOCK : 0; }

void fr_fingerprints(uint64_t *out, const void *const *data, const int64_t *bytes, int n, int nthreads)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        out[i] = 0;
        total += fr_fp_nblocks(bytes[i]);
    }
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > total / 4) nt = (int)(total / 4);     /* a thread is worth four blocks at least */
    if (nt < 1) nt = 1;
#pragma omp parallel num_threads(fr_team(nt)) if (nt > 1)
    {
        /* block k of the concatenation is block j of buffer i; the sums are commutative, so the order
           in which threads add does not matter */
        int i = 0;
        int64_t first = 0;        /* index of buffer i's first block in the concatenation */
#pragma omp for schedule(static)
        for (int64_t k = 0; k < total; k++) {
            while (k - first >= fr_fp_nblocks(bytes[i])) first += fr_fp_nblocks(bytes[i++]);
            const int64_t j = k - first, nb = bytes[i] - j * FR_FP_BLOCK;
            uint64_t h = fr_fp_block((const unsigned char *)data[i] + j * FR_FP_BLOCK,
                                     nb < FR_FP_BLOCK ? nb : FR_FP_BLOCK, (uint64_t)j);
#pragma omp atomic
            out[i] += h;
        }
    }
    for (int b = 0; b < n; b++) out[b] = fr_mix(out[b] ^ (uint64_t)bytes[b] * FR_FP_PRIME);
}
