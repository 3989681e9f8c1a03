/* A cursor over a file's header text (NPY's Python dict, safetensors' JSON) that
 * never reads past the text's end, whatever the file contains, and reports syntax
 * errors with the offset and an excerpt of the text there. */
#ifndef MILES_IO_TEXT_CURSOR_H
#define MILES_IO_TEXT_CURSOR_H

#include <stdbool.h>
#include <stdint.h>

/* The text is [start, end); p is the next character. path and unit name the file
 * and the text ("dict", "header") in error messages. */
typedef struct {
    const char *start, *p, *end;
    const char *path;
    const char *unit;
} io_cur;

/* Set "<path>: malformed header: <what> at byte <k> of the <unit> (near '...')"
 * as the error, so that a corrupt header can be recognised from the message
 * alone; returns -1. */
int io_cur_fail(const io_cur *c, const char *what);

/* Skip the white space allowed between tokens (space, tab, CR, LF). */
void io_cur_ws(io_cur *c);

/* Skip white space and consume ch if it comes next; returns whether it did. */
bool io_cur_accept(io_cur *c, char ch);

/* Skip white space and consume ch, or fail with "expected '<ch>'". */
int io_cur_expect(io_cur *c, char ch);

/* Consume the word w if it comes next (no white space skipped). */
bool io_cur_word(io_cur *c, const char *w);

/* What io_cur_digits found. */
typedef enum { IO_CUR_NUM_OK, IO_CUR_NUM_NONE, IO_CUR_NUM_OVERFLOW } io_cur_num;

/* Read the decimal digits at the cursor (no sign, no white space skipped) as a
 * value of at most max into *out. NONE: no digit there (nothing consumed);
 * OVERFLOW: the value exceeds max (the cursor is left on the digit that
 * overflowed). */
io_cur_num io_cur_digits(io_cur *c, uint64_t max, uint64_t *out);

#endif
