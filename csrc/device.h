/* Where a tensor's storage lives. */
#ifndef MILES_DEVICE_H
#define MILES_DEVICE_H

#include <stdbool.h>

typedef enum { DEV_CPU = 0, DEV_CUDA = 1, DEV_TYPES } device_type;

typedef struct {
    device_type type;
    int index; /* GPU ordinal; 0 for the CPU */
} device;

#define DEVICE_CPU ((device){DEV_CPU, 0})

bool device_eq(device a, device b);
/* "cpu" or "cuda:N" into buf (at least 16 bytes); returns buf. */
const char *device_str(device d, char *buf);
/* Parse "cpu", "cuda", "cuda:N"; returns 0 on success. */
int device_parse(const char *s, device *out);

#endif
