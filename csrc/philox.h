/* The counter-based generator itself (Philox-4x32-10, Salmon et al., "Parallel
 * random numbers: as easy as 1, 2, 3", SC 2011) and its uniform conversions, as
 * inline functions that the CPU (rng.c) and the GPU (kernels/random.cu) compile
 * from this one text, so both draw the same numbers. */
#ifndef MILES_PHILOX_H
#define MILES_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define PHILOX_FN __host__ __device__ static inline
#else
#define PHILOX_FN static inline
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Four 32-bit random words for one counter under a 64-bit key. */
PHILOX_FN void philox_4x32(uint64_t counter, uint64_t key, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Uniform in [0, 1) with 24 random bits (exact in float32). */
PHILOX_FN float philox_u01f(uint32_t w)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

/* Uniform in [0, 1) with 8 random bits: a bfloat16 draw (exact in it, as
 * PyTorch's, whose bf16 numbers in [0, 1) are multiples of 2^-8 below 1; 24 bits
 * rounded to bf16 would give 1 about once in 500). */
PHILOX_FN float philox_u01h(uint32_t w)
{
    return (float)(w >> 24) * (1.0f / 256.0f);
}

/* Uniform in [0, 1) with 53 random bits from two words. */
PHILOX_FN double philox_u01d(uint32_t w0, uint32_t w1)
{
    uint64_t bits = ((uint64_t)w0 << 21) ^ (uint64_t)(w1 >> 11);
    return (double)(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

#endif
