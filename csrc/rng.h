/* Random numbers from a counter-based generator (Philox-4x32-10): the value of draw
 * number i depends only on (seed, i), so a seed gives the same numbers on every
 * machine, thread count and device. A global offset advances with each draw. */
#ifndef MILES_RNG_H
#define MILES_RNG_H

#include <stdint.h>

void rng_manual_seed(uint64_t seed);
uint64_t rng_get_seed(void);
/* Claim n consecutive counters for one draw; returns the first. */
uint64_t rng_reserve(uint64_t n);
/* The generator's position, to save and restore (checkpoints). */
uint64_t rng_get_offset(void);
void rng_set_state(uint64_t seed, uint64_t offset);

/* Four 32-bit random words for one counter under a 64-bit key. */
void rng_philox(uint64_t counter, uint64_t key, uint32_t out[4]);
/* Uniform in [0, 1) with 8 (bfloat16), 24 (float) or 53 (double) random bits,
 * from the words. */
float rng_u01h(uint32_t w);
float rng_u01f(uint32_t w);
double rng_u01d(uint32_t w0, uint32_t w1);

#endif
