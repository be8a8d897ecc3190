/* fuzz_common.h — what the libFuzzer targets in tests/fuzz/ share: a failed
 * invariant that aborts (so libFuzzer keeps the input as a crash file), an
 * independent reader of the image wire format (header fields and raw entry
 * walk, written from image.h's layout, not from image.c), the header fix-up
 * that lets mutations reach the entries, and the deep checks of a parsed
 * image (lookup, listings, data bytes, merge, remove, serialise round trip).
 *
 * The fix-up (fuzz_image_fixup, used by fuzz_image_fixup and fuzz_image_file):
 * a mutated image almost never has the right payload length and checksum, so
 * the parser would stop at the header. The fix-up rewrites the header's
 * payload length to len - 48 and the checksum with the library's own
 * mpii_checksum64 (seeded as mpii_image_serialize does); when bit 0 of the
 * header's sequence number (byte 16) is set, it first rewrites the entry
 * count too, to the number of entries whose headers, paths and data fit the
 * buffer. The sequence is not checked by the parser, so that bit is free for
 * the fuzzer to flip; magic, version and flags are left as mutated. */
#ifndef MPIIMPORT_FUZZ_COMMON_H
#define MPIIMPORT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/image.h"
#include "mpiimport/status.h"

/* Prints where and why, then aborts: libFuzzer reports it as a crash. */
#define FUZZ_CHECK(cond, ...)                                              \
    do {                                                                   \
        if (!(cond))                                                       \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);             \
    } while (0)

_Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Little-endian reads, independent of image.c's. */
uint16_t fuzz_le16(const uint8_t *p);
uint32_t fuzz_le32(const uint8_t *p);
uint64_t fuzz_le64(const uint8_t *p);

/* In-place header fix-up (see above). Inputs shorter than the header are
 * left alone. */
void fuzz_image_fixup(uint8_t *buf, size_t len);

/* A whole, well-formed buffer (parsed MPII_OK from buf/len) and its image:
 * checks every invariant the core promises, aborting on the first broken
 * one. seq is the sequence the parser returned. */
void fuzz_check_image(const mpii_image *img, const uint8_t *buf, size_t len, uint64_t seq);

/* Whether two images hold the same entries at the same indexes. */
int fuzz_images_equal(const mpii_image *a, const mpii_image *b);

/* Whether st is one of the statuses mpii_image_parse documents. */
int fuzz_parse_status_ok(mpii_status st);

#endif
