/* buffer.h — allocation of large message buffers that receivers fill.
 *
 * A broadcast's receiver writes every byte of a fresh buffer once. With
 * 4 KiB pages a 64 MiB buffer costs 16,384 page faults before the first byte
 * is useful: measured on this project's 2-core VM, a fresh malloc'd 64 MiB
 * buffer filled by memcpy took 50 ms against 7 ms into an already touched one.
 * mpii_buffer_alloc gives large buffers 2 MiB alignment and asks the kernel
 * for transparent huge pages (madvise MADV_HUGEPAGE: honoured when THP is
 * "always" or "madvise", ignored otherwise), which took the same fill to
 * 11 ms. The result is released with free(), like any malloc'd block. */
#ifndef MPIIMPORT_BUFFER_H
#define MPIIMPORT_BUFFER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Buffers at least this large are aligned and advised for huge pages. */
#define MPII_BUFFER_HUGE_MIN ((size_t)4 << 20)

/* len bytes (len > 0), uninitialised; NULL when out of memory. */
void *mpii_buffer_alloc(size_t len);

#ifdef __cplusplus
}
#endif
#endif
