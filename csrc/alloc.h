/* Memory for tensor storage, per device, with live-byte accounting.
 * When an allocation fails, the allocator calls the out-of-memory hook (set by the
 * Lua binding to run a full garbage collection) and retries once. */
#ifndef MILES_ALLOC_H
#define MILES_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"

typedef void (*alloc_oom_hook)(void *ud);
/* Called after every allocation with its size, so the binding can pace Lua's
 * collector by the memory that userdata hold outside Lua's heap. */
typedef void (*alloc_pressure_hook)(void *ud, device_type type, size_t nbytes);

/* Called when a device's cache has no block for a request, before the device is
 * asked for more: true when it collected garbage (so the cache may have one now). */
typedef bool (*alloc_reclaim_hook)(void *ud, device_type type);

void alloc_set_hooks(alloc_oom_hook oom, alloc_pressure_hook pressure,
                     alloc_reclaim_hook reclaim, void *ud);

/* Tell the pressure hook about nbytes of memory allocated elsewhere (pinned host
 * memory), so that Lua's collector also paces itself by it. Thread-safe. */
void alloc_note_pressure(size_t nbytes);

/* Returns NULL and sets the error message on failure. nbytes may be 0. */
void *alloc_bytes(device dev, size_t nbytes);
void alloc_release(device dev, void *p, size_t nbytes);

typedef struct {
    int64_t live_bytes;   /* held by live storages */
    int64_t peak_bytes;   /* high-water mark of live_bytes */
    int64_t cached_bytes; /* kept by a caching allocator for reuse */
    int64_t n_allocs;     /* allocation calls that reached the device */
} alloc_stats;

alloc_stats alloc_get_stats(device_type type);
/* Give cached blocks back to the device. */
void alloc_empty_cache(device_type type);

#endif
