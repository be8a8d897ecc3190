/* buffer.c — mpii_buffer_alloc: large receive buffers on transparent huge
 * pages (see buffer.h for why and the measured effect). */
#include <stdlib.h>
#include <sys/mman.h>

#include "mpiimport/buffer.h"

#define HUGE_PAGE ((size_t)2 << 20)

void *mpii_buffer_alloc(size_t len)
{
    if (len == 0)
        return NULL;
    if (len < MPII_BUFFER_HUGE_MIN)
        return malloc(len);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, len) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* Advice only: where THP is off or unsupported, the buffer still works
     * with small pages, so a failure here is deliberately not an error. */
    size_t whole = len & ~(HUGE_PAGE - 1);
    if (whole > 0)
        (void)madvise(p, whole, MADV_HUGEPAGE);
#endif
    return p;
}
