/* File-system helpers of the data cache (see fsutil.h), on POSIX calls. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"

int fsutil_mkdir_p(const char *path)
{
    size_t n = strlen(path);
    char *p = malloc(n + 1);
    if (!p)
        return err_set("mkdir: %s: out of memory", path);
    memcpy(p, path, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        struct stat st;
        if (mkdir(p, 0755) != 0 && !(errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode)))
            rc = err_set("mkdir: %s: %s", p, strerror(errno));
        p[i] = c;
    }
    free(p);
    return rc;
}

/* nftw callback: remove one entry (children come before their directory). */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        err_set("remove: %s: %s", path, strerror(errno));
        return 1; /* stops the walk; nftw returns it */
    }
    return 0;
}

int fsutil_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : err_set("remove: %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 ? 0 : err_set("remove: %s: %s", path, strerror(errno));
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc < 0)
        return err_set("remove: %s: %s", path, strerror(errno));
    return rc == 0 ? 0 : -1;
}

int fsutil_fsync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set("fsync: %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems refuse fsync on directories; the data is not at risk then. */
    if (rc != 0 && e != EINVAL && e != EBADF)
        return err_set("fsync: %s: %s", path, strerror(e));
    return 0;
}

void fsutil_free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Append a copy of s to the growing list. */
static int list_push(char ***names, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        char **grown = realloc(*names, c * sizeof *grown);
        if (!grown)
            return -1;
        *names = grown;
        *cap = c;
    }
    return ((*names)[*n] = strdup(s)) ? (int)(++*n, 0) : -1;
}

int fsutil_list_dir(const char *path, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(path);
    if (!d)
        return err_set("list: %s: %s", path, strerror(errno));
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (list_push(names, n, &cap, e->d_name) != 0)
            rc = err_set("list: %s: out of memory", path);
    }
    closedir(d);
    if (rc != 0) {
        fsutil_free_list(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return rc;
}

bool fsutil_pid_alive(long pid)
{
    if (pid <= 0)
        return false;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return true; /* no /proc: kill's answer is all we have */
    char buf[512];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return !(close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z');
}
