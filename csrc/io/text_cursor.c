/* The bounded text cursor of the header parsers. See text_cursor.h. */
#include "text_cursor.h"

#include <stdio.h>
#include <string.h>

#include "io_file.h"

int io_cur_fail(const io_cur *c, const char *what)
{
    char near[24];
    size_t n = 0;
    for (const char *q = c->p; q < c->end && n < sizeof near - 1; q++)
        near[n++] = (*q >= 0x20 && *q < 0x7f) ? *q : '?';
    near[n] = '\0';
    return io_file_err(c->path, "malformed header: %s at byte %td of the %s (near '%s')", what,
                       c->p - c->start, c->unit, near);
}

void io_cur_ws(io_cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

bool io_cur_accept(io_cur *c, char ch)
{
    io_cur_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

int io_cur_expect(io_cur *c, char ch)
{
    if (io_cur_accept(c, ch))
        return 0;
    char what[24];
    snprintf(what, sizeof what, "expected '%c'", ch);
    return io_cur_fail(c, what);
}

bool io_cur_word(io_cur *c, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

io_cur_num io_cur_digits(io_cur *c, uint64_t max, uint64_t *out)
{
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return IO_CUR_NUM_NONE;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        uint64_t d = (uint64_t)(*c->p - '0');
        if (v > (max - d) / 10)
            return IO_CUR_NUM_OVERFLOW;
        v = v * 10 + d;
        c->p++;
    }
    *out = v;
    return IO_CUR_NUM_OK;
}
