/* XXH64, written from its published specification (Yann Collet's xxHash): four
 * lanes over 32-byte stripes, merged, then the tail and a final avalanche. The
 * streaming form below feeds whole stripes of each read and keeps the tail. */
#include "checksum.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

#define CHUNK (1u << 20) /* bytes per read: a multiple of the 32-byte stripe */

typedef struct {
    uint64_t v[4];
    uint64_t total;
    unsigned char tail[32];
    size_t ntail;
} xxh64_state;

/* Rotate left by r bits (0 < r < 64). */
static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian loads (the format's byte order on any host). */
static uint64_t load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t load32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* One lane's step over 8 bytes. */
static uint64_t round64(uint64_t acc, uint64_t in)
{
    acc += in * P2;
    return rotl(acc, 31) * P1;
}

/* Fold a lane into the hash. */
static uint64_t merge64(uint64_t h, uint64_t v)
{
    h ^= round64(0, v);
    return h * P1 + P4;
}

/* The lanes' starting values for seed 0. */
static void xxh_init(xxh64_state *s)
{
    memset(s, 0, sizeof *s);
    s->v[0] = P1 + P2;
    s->v[1] = P2;
    s->v[2] = 0;
    s->v[3] = -P1;
}

/* Feed n bytes; the last n % 32 wait in the tail for more (or for the end). */
static void xxh_update(xxh64_state *s, const unsigned char *p, size_t n)
{
    s->total += n;
    while (n > 0 && s->ntail > 0 && s->ntail < 32) {
        s->tail[s->ntail++] = *p++;
        n--;
    }
    if (s->ntail == 32) {
        for (int i = 0; i < 4; i++)
            s->v[i] = round64(s->v[i], load64(s->tail + 8 * i));
        s->ntail = 0;
    }
    for (; n >= 32; p += 32, n -= 32)
        for (int i = 0; i < 4; i++)
            s->v[i] = round64(s->v[i], load64(p + 8 * i));
    memcpy(s->tail + s->ntail, p, n);
    s->ntail += n;
}

/* Merge the lanes (inputs of 32+ bytes), fold in the tail, avalanche. */
static uint64_t xxh_final(const xxh64_state *s)
{
    uint64_t h;
    if (s->total >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++)
            h = merge64(h, s->v[i]);
    } else {
        h = P5;
    }
    h += s->total;
    const unsigned char *p = s->tail;
    size_t n = s->ntail;
    for (; n >= 8; p += 8, n -= 8)
        h = rotl(h ^ round64(0, load64(p)), 27) * P1 + P4;
    if (n >= 4) {
        h = rotl(h ^ (uint64_t)load32(p) * P1, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; p++, n--)
        h = rotl(h ^ *p * P5, 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    return h ^ (h >> 32);
}

uint64_t checksum_bytes(const void *data, size_t n)
{
    xxh64_state s;
    xxh_init(&s);
    xxh_update(&s, data, n);
    return xxh_final(&s);
}

int checksum_file(const char *path, uint64_t *hash, int64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set("checksum: %s: %s", path, strerror(errno));
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return err_set("checksum: %s: out of memory", path);
    }
    xxh64_state s;
    xxh_init(&s);
    size_t got;
    while ((got = fread(buf, 1, CHUNK, f)) > 0)
        xxh_update(&s, buf, got);
    int bad = ferror(f);
    int e = errno;
    free(buf);
    fclose(f);
    if (bad)
        return err_set("checksum: %s: read error: %s", path, strerror(e));
    *hash = xxh_final(&s);
    *size = (int64_t)s.total;
    return 0;
}
