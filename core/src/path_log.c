/* path_log.c — FIND, for the next pack: the paths a process looked at
 * (mpiimport/path_log.h). Used by the preload and audit libraries, which
 * call it from inside interposed file-system calls: it allocates once, makes
 * no call that those libraries interpose after it opened its file (write()
 * only), and never prints. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpiimport/checksum.h"
#include "mpiimport/path_log.h"

#define SEEN_CAP 65536u /* distinct paths remembered per process; more are logged again */

mpii_status mpii_path_log_open(mpii_path_log *log, const char *prefix, const char *who)
{
    if (log == NULL)
        return MPII_ERR_INVALID;
    memset(log, 0, sizeof *log);
    log->fd = -1;
    if (prefix == NULL || prefix[0] == '\0')
        return MPII_OK;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s.%ld.%s", prefix, (long)getpid(), who ? who : "log");
    if (n < 0 || (size_t)n >= sizeof path)
        return MPII_ERR_TOOLONG;
    log->seen = calloc(SEEN_CAP, sizeof *log->seen);
    if (log->seen == NULL)
        return MPII_ERR_NOMEM;
    log->cap = SEEN_CAP;
    log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (log->fd < 0) {
        free(log->seen);
        log->seen = NULL;
        return errno == ENOSPC ? MPII_ERR_NOSPACE : MPII_ERR_IO;
    }
    return MPII_OK;
}

/* 1: newly remembered (or the table is full); 0: seen before. */
static int remember(mpii_path_log *log, uint64_t h)
{
    if (h == 0)
        h = 1;
    if (log->count * 4 >= log->cap * 3)
        return 1;
    size_t i = (size_t)(h & (log->cap - 1));
    while (log->seen[i] != 0) {
        if (log->seen[i] == h)
            return 0;
        i = (i + 1) & (log->cap - 1);
    }
    log->seen[i] = h;
    log->count++;
    return 1;
}

void mpii_path_log_add(mpii_path_log *log, const char *path)
{
    if (log == NULL || log->fd < 0 || path == NULL || path[0] != '/')
        return;
    size_t len = strnlen(path, 4096);
    if (len >= 4096 || memchr(path, '\n', len) != NULL) {
        log->dropped++;
        return;
    }
    if (!remember(log, mpii_checksum64(path, len, 0)))
        return;
    char line[4097];
    memcpy(line, path, len);
    line[len] = '\n';
    /* one write per line: O_APPEND keeps lines whole across forked children */
    if (write(log->fd, line, len + 1) == (ssize_t)(len + 1))
        log->logged++;
    else
        log->dropped++;
}

void mpii_path_log_close(mpii_path_log *log)
{
    if (log == NULL)
        return;
    if (log->fd >= 0) {
        int rc = close(log->fd);
        (void)rc; /* the lines are written already; nothing to report to */
    }
    free(log->seen);
    memset(log, 0, sizeof *log);
    log->fd = -1;
}
