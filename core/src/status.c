/* status.c — text for each mpii_status, for the edges that print. */
#include "mpiimport/status.h"

const char *mpii_strerror(mpii_status status)
{
    switch (status) {
    case MPII_OK: return "success";
    case MPII_ERR_NOMEM: return "out of memory";
    case MPII_ERR_IO: return "file-system error";
    case MPII_ERR_INVALID: return "invalid argument or configuration";
    case MPII_ERR_TRUNCATED: return "truncated image";
    case MPII_ERR_CORRUPT: return "corrupt image";
    case MPII_ERR_CHECKSUM: return "image checksum mismatch";
    case MPII_ERR_VERSION: return "unsupported image version";
    case MPII_ERR_GAP: return "not received yet";
    case MPII_ERR_NOTFOUND: return "not found";
    case MPII_ERR_TRANSPORT: return "transport failure";
    case MPII_ERR_TIMEOUT: return "timed out";
    case MPII_ERR_UNSAFE: return "not ours (another user's, open to others, or a link)";
    case MPII_ERR_NOSPACE: return "no space left on the staging file system";
    case MPII_ERR_ENDED: return "the root has ended the session";
    case MPII_ERR_TOOLONG: return "path too long";
    case MPII_ERR_NOTREG: return "not a regular file";
    }
    return "unknown status";
}
