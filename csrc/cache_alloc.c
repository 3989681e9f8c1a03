#include "cache_alloc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define MIN_CLASS_LOG2 9 /* 512 bytes */
#define STEPS 4          /* classes per power of two */
#define MAX_REQUEST ((size_t)1 << 60)
/* class 0: up to 512 bytes; then 4 classes for each power of two above */
#define N_CLASSES (1 + (61 - MIN_CLASS_LOG2) * STEPS)

/* The free blocks of one size class: a growing stack of pointers (kept in host
 * memory: the blocks themselves may not be readable from the host). */
typedef struct {
    void **p;
    int64_t n, cap;
} free_list;

struct cache_alloc {
    cache_alloc_device dev;
    pthread_mutex_t lock;
    free_list lists[N_CLASSES];
    cache_alloc_stats stats;
};

/* Class k's size: 512, then 2^e * (1 + s/4) for s = 1..4 from e = 9 up. */
static size_t class_size(int k)
{
    if (k == 0)
        return (size_t)1 << MIN_CLASS_LOG2;
    int e = (k - 1) / STEPS + MIN_CLASS_LOG2, s = (k - 1) % STEPS + 1;
    return ((size_t)1 << e) + (size_t)s * ((size_t)1 << (e - 2));
}

/* The smallest class that holds n bytes (n <= MAX_REQUEST). */
static int class_of(size_t n)
{
    if (n <= ((size_t)1 << MIN_CLASS_LOG2))
        return 0;
    int e = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^e < n <= 2^(e+1) */
    size_t quarter = (size_t)1 << (e - 2);
    size_t s = (n - ((size_t)1 << e) + quarter - 1) / quarter; /* 1..4 */
    return 1 + (e - MIN_CLASS_LOG2) * STEPS + (int)s - 1;
}

size_t cache_alloc_class(size_t n)
{
    return n > MAX_REQUEST ? 0 : class_size(class_of(n));
}

cache_alloc *cache_alloc_new(cache_alloc_device dev)
{
    cache_alloc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->dev = dev;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

/* With the lock held: give every cached block back to the device. */
static void empty_locked(cache_alloc *c)
{
    for (int k = 0; k < N_CLASSES; k++) {
        free_list *l = &c->lists[k];
        size_t size = class_size(k);
        for (int64_t i = 0; i < l->n; i++) {
            c->dev.release(c->dev.ud, l->p[i], size);
            c->stats.device_releases++;
            c->stats.cached_bytes -= (int64_t)size;
        }
        l->n = 0;
    }
}

void cache_alloc_free(cache_alloc *c)
{
    if (!c)
        return;
    empty_locked(c);
    for (int k = 0; k < N_CLASSES; k++)
        free(c->lists[k].p);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* A block of n's class from its free list, else (when grow) from the device. */
static void *get(cache_alloc *c, size_t n, bool grow)
{
    if (n > MAX_REQUEST)
        return NULL;
    int k = class_of(n);
    size_t size = class_size(k);
    pthread_mutex_lock(&c->lock);
    free_list *l = &c->lists[k];
    void *p = NULL;
    if (l->n > 0) {
        p = l->p[--l->n];
        c->stats.cached_bytes -= (int64_t)size;
        c->stats.hits++;
    } else if (grow) {
        p = c->dev.alloc(c->dev.ud, size);
        if (!p && c->stats.cached_bytes > 0) {
            /* The cache holds memory of other sizes: give it back and try again. */
            empty_locked(c);
            p = c->dev.alloc(c->dev.ud, size);
        }
        if (p)
            c->stats.device_allocs++;
    }
    if (p)
        c->stats.in_use_bytes += (int64_t)size;
    pthread_mutex_unlock(&c->lock);
    return p;
}

void *cache_alloc_get(cache_alloc *c, size_t n)
{
    return get(c, n, true);
}

void *cache_alloc_reuse(cache_alloc *c, size_t n)
{
    return get(c, n, false);
}

/* With the lock held: put block p of class k on its free list, or give it back to
 * the device when the list cannot grow. */
static void keep_locked(cache_alloc *c, void *p, int k)
{
    size_t size = class_size(k);
    free_list *l = &c->lists[k];
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 8;
        void **grown = realloc(l->p, (size_t)cap * sizeof *grown);
        if (!grown) { /* no room to remember it: give it straight back */
            c->dev.release(c->dev.ud, p, size);
            c->stats.device_releases++;
            return;
        }
        l->p = grown;
        l->cap = cap;
    }
    l->p[l->n++] = p;
    c->stats.cached_bytes += (int64_t)size;
}

void cache_alloc_put(cache_alloc *c, void *p, size_t n)
{
    if (!p)
        return;
    int k = class_of(n);
    pthread_mutex_lock(&c->lock);
    c->stats.in_use_bytes -= (int64_t)class_size(k);
    keep_locked(c, p, k);
    pthread_mutex_unlock(&c->lock);
}

void *cache_alloc_take_cached(cache_alloc *c, size_t n)
{
    if (n > MAX_REQUEST)
        return NULL;
    int k = class_of(n);
    pthread_mutex_lock(&c->lock);
    free_list *l = &c->lists[k];
    void *p = NULL;
    if (l->n > 0) {
        p = l->p[--l->n];
        c->stats.cached_bytes -= (int64_t)class_size(k);
    }
    pthread_mutex_unlock(&c->lock);
    return p;
}

void cache_alloc_adopt(cache_alloc *c, void *p, size_t n)
{
    if (!p || n > MAX_REQUEST)
        return;
    pthread_mutex_lock(&c->lock);
    keep_locked(c, p, class_of(n));
    pthread_mutex_unlock(&c->lock);
}

void cache_alloc_empty(cache_alloc *c)
{
    pthread_mutex_lock(&c->lock);
    empty_locked(c);
    pthread_mutex_unlock(&c->lock);
}

cache_alloc_stats cache_alloc_get_stats(cache_alloc *c)
{
    pthread_mutex_lock(&c->lock);
    cache_alloc_stats s = c->stats;
    pthread_mutex_unlock(&c->lock);
    return s;
}
