/* fuzz_image_fixup.c — libFuzzer target: mpii_image_parse after the header's
 * payload length and checksum (and, when bit 0 of the sequence number is
 * set, the entry count) are fixed up to match the mutated bytes
 * (fuzz_image_fixup, fuzz_common.h), so mutations reach the label, the
 * entries and the listing decoder instead of stopping at the checksum.
 *
 * Invariants: after the fix-up a buffer of at least a header is never
 * TRUNCATED or CHECKSUM (length and sum are right by construction); the
 * status is one the parser documents; an accepted image passes
 * fuzz_check_image, serialise round trip included. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: ASan flags any read past the input. */
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    if (size)
        memcpy(buf, data, size);
    fuzz_image_fixup(buf, size);

    mpii_image *img = NULL;
    uint64_t seq = 0;
    char label[MPII_IMAGE_LABEL_MAX + 1];
    mpii_status st = mpii_image_parse(buf, size, &img, &seq, label, sizeof label);
    FUZZ_CHECK(fuzz_parse_status_ok(st), "status %d (%s)", (int)st, mpii_strerror(st));
    if (size >= MPII_IMAGE_HEADER_SIZE)
        FUZZ_CHECK(st != MPII_ERR_TRUNCATED && st != MPII_ERR_CHECKSUM, "fixed-up header refused: %s",
                   mpii_strerror(st));
    if (st == MPII_OK) {
        fuzz_check_image(img, buf, size, seq);
        mpii_image_destroy(img);
    } else {
        FUZZ_CHECK(img == NULL, "*out not reset on %s", mpii_strerror(st));
    }
    free(buf);
    return 0;
}
