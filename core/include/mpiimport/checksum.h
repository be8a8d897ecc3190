/* checksum.h — the 64-bit checksum that protects images on the wire.
 *
 * An xxHash64-style hash: 8 bytes per step, four lanes, good avalanche, a few
 * GB/s. It detects corruption and truncation; it is not cryptographic. */
#ifndef MPIIMPORT_CHECKSUM_H
#define MPIIMPORT_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

uint64_t mpii_checksum64(const void *data, size_t len, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
