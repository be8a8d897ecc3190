/* util.h — the small helpers the core and the transports share, written
 * once: a monotonic clock in seconds (timeouts, durations), reading a whole
 * file, and little-endian integers in byte buffers (the image wire format,
 * control messages).
 * Header-only (static inline); clock_gettime needs _POSIX_C_SOURCE >= 199309L,
 * which the build defines. */
#ifndef MPIIMPORT_UTIL_H
#define MPIIMPORT_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on CLOCK_MONOTONIC; 0.0 if it cannot be read (it always can: a
 * failure degrades to "no time passes"). */
static inline double mpii_monotonic_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads exactly len bytes from fd into buf (EINTR retried): MPII_OK,
 * MPII_ERR_TRUNCATED when the file ends first, MPII_ERR_IO on an error. */
static inline mpii_status mpii_read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? MPII_ERR_TRUNCATED : MPII_ERR_IO;
        got += (size_t)r;
    }
    return MPII_OK;
}

static inline void mpii_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void mpii_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void mpii_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t mpii_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline uint32_t mpii_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t mpii_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#ifdef __cplusplus
}
#endif
#endif
