/* pyc.h — validation of a bytecode cache file's header, as importlib does.
 *
 * Mirrors _classify_pyc and _validate_timestamp_pyc of
 * importlib/_bootstrap_external.py: 16-byte header = magic (4) | flags (4) |
 * either mtime (4) + source size (4), or a source hash (8). */
#ifndef MPIIMPORT_PYC_H
#define MPIIMPORT_PYC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPII_PYC_HEADER_SIZE 16u

typedef enum mpii_pyc_verdict {
    MPII_PYC_VALID = 0,          /* timestamp pyc matching the source, or unchecked hash pyc */
    MPII_PYC_STALE = 1,          /* timestamp pyc of another mtime or size */
    MPII_PYC_BAD_MAGIC = 2,      /* another Python version's bytecode */
    MPII_PYC_BAD_FLAGS = 3,      /* unknown flag bits */
    MPII_PYC_TRUNCATED = 4,      /* shorter than its header */
    MPII_PYC_HASH_CHECKED = 5    /* hash-based pyc whose source hash must be checked */
} mpii_pyc_verdict;

/* For a pyc next to its source. mtime_ns/size are the source's stat. */
mpii_pyc_verdict mpii_pyc_check(const uint8_t magic[4], const uint8_t *pyc, size_t len,
                                int64_t source_mtime_ns, uint64_t source_size);
/* For a sourceless pyc: magic and flags only. */
mpii_pyc_verdict mpii_pyc_check_sourceless(const uint8_t magic[4], const uint8_t *pyc,
                                           size_t len);

#ifdef __cplusplus
}
#endif
#endif
