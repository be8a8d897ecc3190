/* fuzz_image.c — libFuzzer target: mpii_image_parse on the raw input, as a
 * rank receives a message (header, checksum and all, as mutated). Mostly
 * exercises the header checks; fuzz_image_fixup.c reaches the entries.
 *
 * Invariants: the status is one the parser documents (never INVALID for
 * valid arguments); short inputs are TRUNCATED and a bad magic CORRUPT, as
 * the checks' order promises; the label is the payload's, NUL-terminated
 * within label_cap; an accepted image passes fuzz_check_image (entries match
 * an independent walk of the bytes, lookups, listings, merge/remove, and a
 * serialise round trip to the same bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A label buffer of exactly label_cap bytes, so ASan sees any write past
     * it; the cap varies with the input length (0 = no room at all). */
    size_t label_cap = size % 3 == 0 ? MPII_IMAGE_LABEL_MAX + 1 : size % 7;
    char *label = malloc(label_cap ? label_cap : 1);
    FUZZ_CHECK(label != NULL, "out of memory");
    label[0] = 'X';
    static char sentinel;
    mpii_image *img = (mpii_image *)(void *)&sentinel; /* must be reset to NULL on failure */
    uint64_t seq = 0;
    mpii_status st = mpii_image_parse(data, size, &img, &seq, label, label_cap);
    FUZZ_CHECK(fuzz_parse_status_ok(st), "status %d (%s)", (int)st, mpii_strerror(st));
    if (size < MPII_IMAGE_HEADER_SIZE)
        FUZZ_CHECK(st == MPII_ERR_TRUNCATED, "%zu bytes: %s", size, mpii_strerror(st));
    else if (memcmp(data, "MPIIMG\r\n", 8) != 0)
        FUZZ_CHECK(st == MPII_ERR_CORRUPT, "bad magic: %s", mpii_strerror(st));
    if (st != MPII_OK) {
        FUZZ_CHECK(img == NULL, "*out not reset on %s", mpii_strerror(st));
        free(label);
        return 0;
    }
    if (label_cap == 0) {
        FUZZ_CHECK(label[0] == 'X', "label written with label_cap 0");
    } else {
        size_t label_len = fuzz_le16(data + MPII_IMAGE_HEADER_SIZE);
        size_t n = label_len < label_cap - 1 ? label_len : label_cap - 1;
        FUZZ_CHECK(memcmp(label, data + MPII_IMAGE_HEADER_SIZE + 2, n) == 0 && label[n] == '\0',
                   "label differs from the payload's");
    }
    fuzz_check_image(img, data, size, seq);
    mpii_image_destroy(img);
    free(label);
    return 0;
}
