/* fuzz_image_file.c — libFuzzer target: the recorded-list / packed-image
 * path, mpii_image_read_file, and what the core then does with the list.
 *
 * Each input gets the header fix-up (fuzz_common.h: payload length and
 * checksum, and the entry count when bit 0 of the sequence is set), is
 * written to a memfd (a regular file, no disk, nothing left behind) and read
 * back through /proc/self/fd/N, the way a recorded list is read from the
 * cache directory. The label buffer's size comes from bits 1-3 of the
 * sequence number (0..6 bytes, or 7 = the full MPII_IMAGE_LABEL_MAX + 1).
 *
 * Invariants: the file reader agrees with mpii_image_parse on the same bytes
 * (status and entries); the label is a NUL-terminated prefix of the
 * payload's within label_cap; an accepted list passes fuzz_check_image
 * (mpii_image_lookup of every entry, mpii_listing_count/find/at over every
 * listing, data bytes, merge/remove, serialise round trip). */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int file_fd = -1;
static char file_path[64];

/* The one file every input is written to. */
static void open_file(void)
{
    if (file_fd >= 0)
        return;
    file_fd = memfd_create("mpiimport-fuzz-list", MFD_CLOEXEC);
    if (file_fd < 0) { /* no memfd: an unlinked temporary file does as well */
        char tmpl[] = "/tmp/mpiimport-fuzz-list.XXXXXX";
        file_fd = mkstemp(tmpl);
        FUZZ_CHECK(file_fd >= 0, "mkstemp: %s", strerror(errno));
        FUZZ_CHECK(unlink(tmpl) == 0, "unlink: %s", strerror(errno));
    }
    int n = snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof file_path, "snprintf");
}

static void write_file(const uint8_t *buf, size_t len)
{
    FUZZ_CHECK(ftruncate(file_fd, 0) == 0, "ftruncate: %s", strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = pwrite(file_fd, buf + off, len - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        FUZZ_CHECK(w > 0, "pwrite: %s", strerror(errno));
        off += (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_file();
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    if (size)
        memcpy(buf, data, size);
    fuzz_image_fixup(buf, size);
    write_file(buf, size);

    unsigned cap_sel = size > 16 ? (buf[16] >> 1) & 7u : 7u;
    size_t label_cap = cap_sel == 7 ? MPII_IMAGE_LABEL_MAX + 1 : cap_sel;
    char *label = malloc(label_cap ? label_cap : 1); /* exactly label_cap: ASan sees overruns */
    FUZZ_CHECK(label != NULL, "out of memory");
    label[0] = 'X';
    mpii_image *img = NULL;
    mpii_status st = mpii_image_read_file(file_path, &img, label, label_cap);

    /* The same bytes in memory. */
    mpii_image *mem = NULL;
    uint64_t seq = 0;
    char full_label[MPII_IMAGE_LABEL_MAX + 1];
    mpii_status mst = mpii_image_parse(buf, size, &mem, &seq, full_label, sizeof full_label);
    FUZZ_CHECK(st == mst, "read_file says %s, parse says %s", mpii_strerror(st), mpii_strerror(mst));
    FUZZ_CHECK(fuzz_parse_status_ok(st), "status %d (%s)", (int)st, mpii_strerror(st));
    if (st != MPII_OK) {
        FUZZ_CHECK(img == NULL && mem == NULL, "*out not reset on %s", mpii_strerror(st));
        free(label);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(fuzz_images_equal(img, mem), "read_file and parse disagree on the entries");
    if (label_cap == 0) {
        FUZZ_CHECK(label[0] == 'X', "label written with label_cap 0");
    } else {
        size_t label_len = fuzz_le16(buf + MPII_IMAGE_HEADER_SIZE);
        size_t n = label_len < label_cap - 1 ? label_len : label_cap - 1;
        FUZZ_CHECK(memcmp(label, buf + MPII_IMAGE_HEADER_SIZE + 2, n) == 0 && label[n] == '\0',
                   "label differs from the payload's");
    }
    fuzz_check_image(img, buf, size, seq);
    mpii_image_destroy(mem);
    mpii_image_destroy(img);
    free(label);
    free(buf);
    return 0;
}
