/* Error reporting for the core: a failing function sets a message and returns a
 * failure value (NULL or non-zero). The Lua bindings turn the message into a Lua
 * error; the core never aborts the process. */
#ifndef MILES_ERROR_H
#define MILES_ERROR_H

/* Set this thread's error message (printf-style). Always returns -1 so that a
 * caller can write `return err_set(...)`. */
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prefix the current message with "<what>: " (e.g. the op's name). Returns -1. */
int err_prefix(const char *what);

/* The last message set on this thread ("" if none). */
const char *err_msg(void);

#endif
