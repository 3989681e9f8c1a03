#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_buf[1024];

int err_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int err_prefix(const char *what)
{
    char tmp[sizeof err_buf];
    size_t n = strlen(what);
    if (n > sizeof tmp / 2)
        n = sizeof tmp / 2;
    memcpy(tmp, what, n);
    memcpy(tmp + n, ": ", 2);
    size_t rest = strlen(err_buf);
    if (rest > sizeof tmp - n - 3)
        rest = sizeof tmp - n - 3;
    memcpy(tmp + n + 2, err_buf, rest);
    tmp[n + 2 + rest] = '\0';
    memcpy(err_buf, tmp, sizeof err_buf);
    return -1;
}

const char *err_msg(void)
{
    return err_buf;
}
