/* File-system helpers of the data cache: directories made and removed, data
 * flushed to disk, a directory listed, processes asked after. Each returns 0 or
 * -1 with an error message naming the path. */
#ifndef MILES_DATA_FSUTIL_H
#define MILES_DATA_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Make a directory and its missing parents (mode 0755); an existing one is fine. */
int fsutil_mkdir_p(const char *path);
/* Remove a file or a directory tree without following symbolic links; a missing
 * path is fine. */
int fsutil_remove_tree(const char *path);
/* Flush a file's or a directory's contents (a directory: its entries) to disk. */
int fsutil_fsync(const char *path);
/* The names in a directory (without "." and ".."), as a malloc'd array of
 * malloc'd strings; free with fsutil_free_list. */
int fsutil_list_dir(const char *path, char ***names, size_t *n);
void fsutil_free_list(char **names, size_t n);
/* Does process pid exist (and is not a zombie we could see)? */
bool fsutil_pid_alive(long pid);

#endif
