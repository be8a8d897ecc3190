/* path_log.h — the paths a process looked at, for the next pack.
 *
 * `mpiimport run` and `python3 -m mpiimport pack` set MPIIMPORT_RECORD_PATHS
 * to a file-name prefix; the preload and audit libraries then append every
 * absolute path they let through to the real file system (every path at all
 * when no stage serves them: pack's recording run) to "<prefix>.<pid>.<who>",
 * one path a line, each path once per process. Pack reads these files and
 * adds what lies under the shared prefixes to the image: files with their
 * bytes, directories with their listings, and the absence of what does not
 * exist (its directory's listing). */
#ifndef MPIIMPORT_PATH_LOG_H
#define MPIIMPORT_PATH_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpii_path_log {
    int fd;            /* -1: not recording */
    uint64_t *seen;    /* open addressing, hashes of logged paths (0 = empty) */
    size_t cap, count;
    unsigned long logged, dropped;
} mpii_path_log;

/* Opens "<prefix>.<pid>.<who>" for appending (0600, close-on-exec, no
 * symlink followed). prefix NULL or empty: log->fd = -1 and MPII_OK. */
mpii_status mpii_path_log_open(mpii_path_log *log, const char *prefix, const char *who);
/* Appends path (absolute, no newline) unless it was logged already; a path
 * that cannot be logged is counted in log->dropped. Not thread-safe: callers
 * serialise. */
void mpii_path_log_add(mpii_path_log *log, const char *path);
void mpii_path_log_close(mpii_path_log *log);

#ifdef __cplusplus
}
#endif
#endif
