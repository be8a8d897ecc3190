/* pyc.c — bytecode cache header checks, as importlib's _classify_pyc and
 * _validate_timestamp_pyc do them. */
#include <string.h>

#include "mpiimport/pyc.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

mpii_pyc_verdict mpii_pyc_check_sourceless(const uint8_t magic[4], const uint8_t *pyc, size_t len)
{
    if (pyc == NULL || len < MPII_PYC_HEADER_SIZE) {
        /* _classify_pyc reads the magic first, then flags; a short file fails there */
        if (pyc != NULL && len >= 4 && memcmp(pyc, magic, 4) != 0)
            return MPII_PYC_BAD_MAGIC;
        return MPII_PYC_TRUNCATED;
    }
    if (memcmp(pyc, magic, 4) != 0)
        return MPII_PYC_BAD_MAGIC;
    if ((le32(pyc + 4) & ~0x3u) != 0)
        return MPII_PYC_BAD_FLAGS;
    return MPII_PYC_VALID;
}

mpii_pyc_verdict mpii_pyc_check(const uint8_t magic[4], const uint8_t *pyc, size_t len,
                                int64_t source_mtime_ns, uint64_t source_size)
{
    mpii_pyc_verdict v = mpii_pyc_check_sourceless(magic, pyc, len);
    if (v != MPII_PYC_VALID)
        return v;
    uint32_t flags = le32(pyc + 4);
    if (flags & 0x1u) /* hash-based */
        return (flags & 0x2u) ? MPII_PYC_HASH_CHECKED : MPII_PYC_VALID;
    /* int(st_mtime), where st_mtime is os.stat's float: sec + nsec * 1e-9 in
     * double precision (so .999999999 s can round up to the next second) */
    int64_t whole = source_mtime_ns / 1000000000, frac = source_mtime_ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        whole -= 1;
    }
    double mtime = (double)whole + (double)frac * 1e-9;
    int64_t secs = (int64_t)mtime;
    if (le32(pyc + 8) != (uint32_t)((uint64_t)secs & 0xFFFFFFFFu))
        return MPII_PYC_STALE;
    if (le32(pyc + 12) != (uint32_t)(source_size & 0xFFFFFFFFu))
        return MPII_PYC_STALE;
    return MPII_PYC_VALID;
}
