#include "rng.h"

#include "philox.h"


static uint64_t g_seed = 0x853c49e6748fea9bull, g_offset;

void rng_manual_seed(uint64_t seed)
{
    g_seed = seed;
    g_offset = 0;
}

uint64_t rng_get_seed(void)
{
    return g_seed;
}

uint64_t rng_reserve(uint64_t n)
{
    uint64_t first = g_offset;
    g_offset += n;
    return first;
}

uint64_t rng_get_offset(void)
{
    return g_offset;
}

void rng_set_state(uint64_t seed, uint64_t offset)
{
    g_seed = seed;
    g_offset = offset;
}

void rng_philox(uint64_t counter, uint64_t key, uint32_t out[4])
{
    philox_4x32(counter, key, out);
}

float rng_u01h(uint32_t w)
{
    return philox_u01h(w);
}

float rng_u01f(uint32_t w)
{
    return philox_u01f(w);
}

double rng_u01d(uint32_t w0, uint32_t w1)
{
    return philox_u01d(w0, w1);
}
