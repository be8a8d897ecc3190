/* status.h — the error codes every mpiimport function returns.
 *
 * Library code never prints: it returns one of these and, where a sentence
 * helps, fills a caller-supplied message buffer. Only the edges (the Python
 * hook, test drivers) print. */
#ifndef MPIIMPORT_STATUS_H
#define MPIIMPORT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mpii_status {
    MPII_OK = 0,
    MPII_ERR_NOMEM,      /* allocation failed */
    MPII_ERR_IO,         /* a file-system call failed (errno kept by the caller) */
    MPII_ERR_INVALID,    /* bad argument or bad configuration value */
    MPII_ERR_TRUNCATED,  /* a buffer ends before its header says it should */
    MPII_ERR_CORRUPT,    /* a buffer's structure is inconsistent */
    MPII_ERR_CHECKSUM,   /* a buffer's checksum does not match its payload */
    MPII_ERR_VERSION,    /* a buffer of a format version we do not read */
    MPII_ERR_GAP,        /* the answer is not known on this rank yet: receive, then retry */
    MPII_ERR_NOTFOUND,   /* no such entry / transport */
    MPII_ERR_TRANSPORT,  /* the transport failed */
    MPII_ERR_TIMEOUT,    /* the operation did not complete in time; it stays pending */
    MPII_ERR_UNSAFE,     /* a staging path is not ours (owner, mode, symlink) */
    MPII_ERR_NOSPACE,    /* the staging file system is full */
    MPII_ERR_ENDED,      /* the root has ended the session: no more messages will come */
    MPII_ERR_TOOLONG,    /* a path or name does not fit its buffer */
    MPII_ERR_NOTREG      /* a file that must be a regular file is not (a FIFO, a device, a directory) */
} mpii_status;

/* A short, static, human-readable description of a status. */
const char *mpii_strerror(mpii_status status);

#ifdef __cplusplus
}
#endif
#endif
