/* File access shared by the io formats: path-prefixed errors, bounded reads,
 * byte order and atomic writes. See io_file.h. */
#include "io_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"

/* --- errors --- */

int io_file_err(const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set("%s: %s", path, msg);
}

/* --- reading --- */

int io_file_open(const char *path, uint64_t *size)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return io_file_err(path, "%s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return io_file_err(path, "%s", strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return io_file_err(path, "%s",
                           S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    *size = (uint64_t)sb.st_size;
    return fd;
}

int io_file_read_at(int fd, const char *path, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return io_file_err(path, "read error: %s", strerror(errno));
        if (r == 0)
            return io_file_err(path, "truncated: the file ended while reading");
        got += (size_t)r;
    }
    return 0;
}

/* --- byte order --- */

uint64_t io_file_uint(const unsigned char *p, size_t n, bool big)
{
    uint64_t u = 0;
    for (size_t k = 0; k < n; k++)
        u |= (uint64_t)p[big ? n - 1 - k : k] << (8 * k);
    return u;
}

void io_file_swap(void *p, size_t esize, size_t n)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n && esize > 1; i++, b += esize)
        for (size_t k = 0; k < esize / 2; k++) {
            unsigned char c = b[k];
            b[k] = b[esize - 1 - k];
            b[esize - 1 - k] = c;
        }
}

/* --- atomic writes --- */

/* fsync the directory holding path, so the rename itself survives a crash. Best
 * effort: some file systems refuse it, and the data is already safe. */
static void io_file_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Create a fresh temporary file next to path ("<path>.tmp.<pid>.<k>", mode 0666
 * less the umask, as a plain fopen would); returns it with its name in tmp. A
 * counter and O_EXCL keep two saves of one path (from two threads) apart. */
static FILE *io_file_create_tmp(const char *path, char *tmp, size_t cap, int *err)
{
    static atomic_uint counter;
    for (int tries = 0; tries < 100; tries++) {
        snprintf(tmp, cap, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST)
            continue;
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!f) {
            *err = errno ? errno : EIO;
            if (fd >= 0) {
                close(fd);
                unlink(tmp);
            }
        }
        return f;
    }
    *err = EEXIST;
    return NULL;
}

/* Write the contents to f and flush them to the disk; returns 0 or an errno. */
static int io_file_fill(FILE *f, io_file_writer write, const void *ctx)
{
    bool ok = write(f, ctx) && fflush(f) == 0 && fsync(fileno(f)) == 0;
    return ok ? 0 : (errno ? errno : EIO);
}

int io_file_write_atomic(const char *path, io_file_writer write, const void *ctx)
{
    size_t cap = strlen(path) + 48;
    char *tmp = malloc(cap);
    if (!tmp)
        return io_file_err(path, "save: out of memory");
    int e = 0;
    FILE *f = io_file_create_tmp(path, tmp, cap, &e);
    if (f) {
        e = io_file_fill(f, write, ctx);
        if (fclose(f) != 0 && e == 0)
            e = errno ? errno : EIO;
        if (e == 0 && rename(tmp, path) != 0)
            e = errno;
        if (e != 0)
            unlink(tmp);
        else
            io_file_sync_dir(path);
    }
    free(tmp);
    return e ? io_file_err(path, "save: %s", strerror(e)) : 0;
}

/* The pieces io_file_write_pieces writes. */
typedef struct {
    size_t n;
    const io_file_piece *v;
} io_file_pieces;

/* Write the pieces to f in order (io_file_write_pieces' writer). */
static bool io_file_put_pieces(FILE *f, const void *ctx)
{
    const io_file_pieces *ps = ctx;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->v[i].n && fwrite(ps->v[i].data, 1, ps->v[i].n, f) != ps->v[i].n)
            return false;
    return true;
}

int io_file_write_pieces(const char *path, size_t n, const io_file_piece *pieces)
{
    io_file_pieces ps = {n, pieces};
    return io_file_write_atomic(path, io_file_put_pieces, &ps);
}
