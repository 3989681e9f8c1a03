#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool device_eq(device a, device b)
{
    return a.type == b.type && a.index == b.index;
}

const char *device_str(device d, char *buf)
{
    if (d.type == DEV_CPU)
        strcpy(buf, "cpu");
    else
        snprintf(buf, 16, "cuda:%d", d.index);
    return buf;
}

int device_parse(const char *s, device *out)
{
    if (strcmp(s, "cpu") == 0) {
        *out = DEVICE_CPU;
        return 0;
    }
    if (strncmp(s, "cuda", 4) == 0) {
        if (s[4] == '\0') {
            *out = (device){DEV_CUDA, 0};
            return 0;
        }
        if (s[4] == ':' && s[5] >= '0' && s[5] <= '9') {
            char *end;
            long n = strtol(s + 5, &end, 10);
            if (*end == '\0' && n < 64) {
                *out = (device){DEV_CUDA, (int)n};
                return 0;
            }
        }
    }
    return -1;
}
