/* A caching allocator in front of a slow device allocator (cudaMalloc): freed
 * blocks go to a free list of their size class and are handed out again, so a
 * training loop that asks for the same sizes every step reaches the device only
 * during its first steps. Sizes are rounded up to a class (4 classes per power of
 * two, at least 512 bytes), so at most a quarter of a block is padding.
 *
 * Device-agnostic (the device calls are function pointers), so the CPU specs test
 * it with a counting fake. Thread-safe. */
#ifndef MILES_CACHE_ALLOC_H
#define MILES_CACHE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* Return a new block of n bytes, or NULL (out of memory). */
    void *(*alloc)(void *ud, size_t n);
    void (*release)(void *ud, void *p, size_t n);
    void *ud;
} cache_alloc_device;

typedef struct cache_alloc cache_alloc;

typedef struct {
    int64_t in_use_bytes;  /* blocks handed out (class sizes) */
    int64_t cached_bytes;  /* blocks on the free lists */
    int64_t device_allocs; /* calls that reached the device */
    int64_t device_releases;
    int64_t hits;          /* requests served from the free lists */
} cache_alloc_stats;

cache_alloc *cache_alloc_new(cache_alloc_device dev);
/* Gives the cached blocks back to the device and frees c (blocks still in use
 * stay the caller's). */
void cache_alloc_free(cache_alloc *c);

/* The class size a request of n bytes is served with. */
size_t cache_alloc_class(size_t n);
/* A block of at least n bytes, or NULL when the device is out of memory even after
 * the cached blocks were given back to it. */
void *cache_alloc_get(cache_alloc *c, size_t n);
/* The same from the free list alone: NULL when it has no block of n's class (the
 * device is not asked). */
void *cache_alloc_reuse(cache_alloc *c, size_t n);
/* Give back a block that cache_alloc_get(c, n) returned (the same n). */
void cache_alloc_put(cache_alloc *c, void *p, size_t n);
/* Give the cached blocks back to the device. */
void cache_alloc_empty(cache_alloc *c);

/* Moving blocks between caches (a CUDA graph's private pool and the general
 * cache): take a cached block of n's class off c's free lists (NULL when there is
 * none; the device is not asked), or add a block that came from elsewhere to c's
 * free lists. Neither counts as in use by c. */
void *cache_alloc_take_cached(cache_alloc *c, size_t n);
void cache_alloc_adopt(cache_alloc *c, void *p, size_t n);
cache_alloc_stats cache_alloc_get_stats(cache_alloc *c);

#endif
