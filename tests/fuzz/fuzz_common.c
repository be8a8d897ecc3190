/* fuzz_common.c — the invariants the image fuzz targets check, and the
 * header fix-up (see fuzz_common.h). The raw walk of the wire format here is
 * written from image.h's layout on purpose: it is the oracle the parser's
 * result is compared with, so it must not share image.c's code. */
#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpiimport/checksum.h"

#define HDR MPII_IMAGE_HEADER_SIZE
#define ENTRY_HDR 32u

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n%s:%d: invariant failed: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

uint16_t fuzz_le16(const uint8_t *p) { return (uint16_t)(p[0] | (unsigned)p[1] << 8); }

uint32_t fuzz_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t fuzz_le64(const uint8_t *p) { return (uint64_t)fuzz_le32(p) | (uint64_t)fuzz_le32(p + 4) << 32; }

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the header fix-up ---- */

/* How many whole entries follow the label, walking as the format says. */
static uint64_t count_entries(const uint8_t *buf, size_t len)
{
    if (len - HDR < 2)
        return 0;
    size_t label_len = fuzz_le16(buf + HDR);
    if (label_len > MPII_IMAGE_LABEL_MAX || len - HDR - 2 < label_len)
        return 0;
    size_t off = HDR + 2 + label_len;
    uint64_t n = 0;
    while (len - off >= ENTRY_HDR) {
        uint64_t path_len = fuzz_le32(buf + off + 4), data_len = fuzz_le64(buf + off + 8);
        uint64_t avail = len - off - ENTRY_HDR;
        if (path_len > avail || data_len > avail - path_len)
            break;
        off += ENTRY_HDR + (size_t)path_len + (size_t)data_len;
        n++;
    }
    return n;
}

void fuzz_image_fixup(uint8_t *buf, size_t len)
{
    if (len < HDR)
        return;
    if (buf[16] & 1u)
        put_le64(buf + 24, count_entries(buf, len));
    put_le64(buf + 32, (uint64_t)(len - HDR));
    /* As mpii_image_serialize: the header's first 40 bytes seed the payload's sum. */
    uint64_t seed = mpii_checksum64(buf, 40, 0);
    put_le64(buf + 40, mpii_checksum64(buf + HDR, len - HDR, seed));
}

int fuzz_parse_status_ok(mpii_status st)
{
    return st == MPII_OK || st == MPII_ERR_NOMEM || st == MPII_ERR_TRUNCATED || st == MPII_ERR_CORRUPT ||
           st == MPII_ERR_CHECKSUM || st == MPII_ERR_VERSION;
}

/* ---- comparing entries ---- */

static int entries_equal(const mpii_entry *a, const mpii_entry *b)
{
    return a->kind == b->kind && a->flags == b->flags && a->path_len == b->path_len &&
           memcmp(a->path, b->path, a->path_len) == 0 && a->data_len == b->data_len &&
           (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0) && a->mtime_ns == b->mtime_ns &&
           a->size == b->size;
}

int fuzz_images_equal(const mpii_image *a, const mpii_image *b)
{
    if (mpii_image_count(a) != mpii_image_count(b) || mpii_image_data_bytes(a) != mpii_image_data_bytes(b))
        return 0;
    for (size_t i = 0; i < mpii_image_count(a); i++)
        if (!entries_equal(mpii_image_entry_at(a, i), mpii_image_entry_at(b, i)))
            return 0;
    return 1;
}

/* ---- the raw entries of a buffer ---- */

typedef struct raw_entry {
    size_t index;         /* position in the buffer */
    mpii_entry e;         /* path points into the buffer: not NUL-terminated */
} raw_entry;

static int raw_cmp(const void *x, const void *y)
{
    const raw_entry *a = x, *b = y;
    if (a->e.kind != b->e.kind)
        return a->e.kind < b->e.kind ? -1 : 1;
    size_t n = a->e.path_len < b->e.path_len ? a->e.path_len : b->e.path_len;
    int c = memcmp(a->e.path, b->e.path, n);
    if (c != 0)
        return c;
    if (a->e.path_len != b->e.path_len)
        return a->e.path_len < b->e.path_len ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index ? 1 : 0);
}

static int same_key(const raw_entry *a, const raw_entry *b)
{
    return a->e.kind == b->e.kind && a->e.path_len == b->e.path_len &&
           memcmp(a->e.path, b->e.path, a->e.path_len) == 0;
}

/* A NUL-terminated copy of n bytes (aborts when out of memory: a fuzzer
 * harness has nothing better to do). */
static char *dup_bytes(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL, "out of memory");
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* ---- listings ---- */

/* a listing's record, for the uniqueness check */
struct named {
    const uint8_t *name;
    size_t len;
};

static int named_cmp(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, m);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* Records in the directory's own order (image format 3): any order, each
 * name once. */
static void check_listing(const mpii_entry *e)
{
    size_t count = mpii_listing_count(e), off = 0, i = 0;
    struct named *seen = malloc((count ? count : 1) * sizeof *seen);
    FUZZ_CHECK(seen != NULL, "out of memory");
    for (; off < e->data_len; i++) {
        FUZZ_CHECK(e->data_len - off >= 3, "listing %s: record header past the end", e->path);
        unsigned type = e->data[off] & ~(unsigned)MPII_DIRENT_LINK; /* the link flag rides along */
        size_t nl = fuzz_le16(e->data + off + 1);
        const uint8_t *name = e->data + off + 3;
        FUZZ_CHECK(nl > 0 && e->data_len - off - 3 >= nl, "listing %s: record %zu out of bounds", e->path, i);
        FUZZ_CHECK(type >= MPII_DIRENT_FILE && type <= MPII_DIRENT_OTHER, "listing %s: type %u", e->path, type);
        FUZZ_CHECK(memchr(name, '/', nl) == NULL && memchr(name, '\0', nl) == NULL,
                   "listing %s: name %zu has '/' or NUL", e->path, i);
        FUZZ_CHECK(i < count, "listing %s: mpii_listing_count %zu, more records", e->path, count);
        seen[i].name = name;
        seen[i].len = nl;

        const char *got = NULL;
        size_t got_len = 0;
        mpii_dirent_type got_type = 0;
        FUZZ_CHECK(mpii_listing_at(e, i, &got, &got_len, &got_type) == MPII_OK, "listing %s: at(%zu)", e->path, i);
        FUZZ_CHECK(got_len == nl && memcmp(got, name, nl) == 0 && (unsigned)got_type == type,
                   "listing %s: at(%zu) differs from record", e->path, i);
        char *z = dup_bytes(name, nl);
        int found = mpii_listing_find(e, z);
        free(z);
        FUZZ_CHECK(found == (int)type, "listing %s: find(name %zu) = %d, want %u", e->path, i, found, type);
        off += 3 + nl;
    }
    FUZZ_CHECK(i == count, "listing %s: %zu records, mpii_listing_count %zu", e->path, i, count);
    qsort(seen, count, sizeof *seen, named_cmp);
    for (size_t k = 1; k < count; k++)
        FUZZ_CHECK(named_cmp(&seen[k - 1], &seen[k]) != 0, "listing %s: a name twice", e->path);
    free(seen);
    const char *got = NULL;
    size_t got_len = 0;
    mpii_dirent_type got_type = 0;
    FUZZ_CHECK(mpii_listing_at(e, count, &got, &got_len, &got_type) == MPII_ERR_INVALID,
               "listing %s: at(count) not refused", e->path);
    /* Names hold no '/' and are not empty: these can never be found. */
    FUZZ_CHECK(mpii_listing_find(e, "a/b") == 0 && mpii_listing_find(e, "") == 0,
               "listing %s: found an impossible name", e->path);
}

static void check_not_listing(const mpii_entry *e)
{
    const char *name = NULL;
    size_t nl = 0;
    mpii_dirent_type type = 0;
    FUZZ_CHECK(mpii_listing_count(e) == 0 && mpii_listing_find(e, "x") == 0 &&
                   mpii_listing_at(e, 0, &name, &nl, &type) == MPII_ERR_INVALID,
               "entry %s of kind %d answers as a listing", e->path, (int)e->kind);
}

/* ---- merge and remove on a copy ---- */

static void check_merge_remove(const mpii_image *img)
{
    mpii_image *copy = NULL;
    FUZZ_CHECK(mpii_image_create(&copy) == MPII_OK, "create");
    FUZZ_CHECK(mpii_image_merge(copy, img) == MPII_OK, "merge into an empty image");
    FUZZ_CHECK(fuzz_images_equal(copy, img), "merged copy differs");
    FUZZ_CHECK(mpii_image_merge(copy, img) == MPII_OK, "merge again");
    FUZZ_CHECK(fuzz_images_equal(copy, img), "merging the same entries twice changed the copy");

    size_t n = mpii_image_count(img);
    if (n > 256) { /* remove rebuilds the table: keep this quadratic walk small */
        mpii_image_destroy(copy);
        return;
    }
    uint64_t bytes = mpii_image_data_bytes(img);
    for (size_t j = 0; j < n; j++) {
        const mpii_entry *gone = mpii_image_entry_at(img, j);
        mpii_image_remove(copy, gone->kind, gone->path);
        bytes -= gone->data_len;
        FUZZ_CHECK(mpii_image_lookup(copy, gone->kind, gone->path) == NULL, "removed %s still found", gone->path);
        FUZZ_CHECK(mpii_image_count(copy) == n - j - 1, "count after %zu removals", j + 1);
        FUZZ_CHECK(mpii_image_data_bytes(copy) == bytes, "data bytes after %zu removals", j + 1);
        if (n <= 64 || j + 1 == n / 2) {
            for (size_t k = j + 1; k < n; k++) {
                const mpii_entry *want = mpii_image_entry_at(img, k);
                const mpii_entry *got = mpii_image_lookup(copy, want->kind, want->path);
                FUZZ_CHECK(got != NULL && entries_equal(got, want), "%s lost after %zu removals", want->path, j + 1);
            }
        }
    }
    mpii_image_remove(copy, MPII_ENTRY_FILE, "/absent"); /* no-op on an empty image */
    FUZZ_CHECK(mpii_image_count(copy) == 0 && mpii_image_data_bytes(copy) == 0, "not empty after removals");
    mpii_image_destroy(copy);
}

/* ---- the whole check ---- */

void fuzz_check_image(const mpii_image *img, const uint8_t *buf, size_t len, uint64_t seq)
{
    /* The header the parser accepted. */
    FUZZ_CHECK(img != NULL && len >= HDR + 2, "accepted %zu bytes", len);
    FUZZ_CHECK(memcmp(buf, "MPIIMG\r\n", 8) == 0, "accepted a bad magic");
    FUZZ_CHECK(fuzz_le32(buf + 8) == MPII_IMAGE_VERSION && fuzz_le32(buf + 12) == 0, "accepted version/flags");
    FUZZ_CHECK(fuzz_le64(buf + 32) == len - HDR, "accepted payload length %llu for %zu bytes",
               (unsigned long long)fuzz_le64(buf + 32), len);
    uint64_t seed = mpii_checksum64(buf, 40, 0);
    FUZZ_CHECK(mpii_checksum64(buf + HDR, len - HDR, seed) == fuzz_le64(buf + 40), "accepted a bad checksum");
    FUZZ_CHECK(seq == fuzz_le64(buf + 16), "sequence %llu", (unsigned long long)seq);
    size_t label_len = fuzz_le16(buf + HDR);
    FUZZ_CHECK(label_len <= MPII_IMAGE_LABEL_MAX && len - HDR - 2 >= label_len, "accepted label length %zu",
               label_len);
    const uint8_t *label = buf + HDR + 2;

    /* The raw entries, walked independently; the parser accepted them, so
     * they must all fit and end exactly at the end of the buffer. */
    uint64_t n = fuzz_le64(buf + 24);
    FUZZ_CHECK(n <= (len - HDR) / ENTRY_HDR, "accepted %llu entries in %zu bytes", (unsigned long long)n, len);
    raw_entry *raw = malloc((n ? (size_t)n : 1) * sizeof *raw);
    FUZZ_CHECK(raw != NULL, "out of memory");
    size_t off = HDR + 2 + label_len;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(len - off >= ENTRY_HDR, "entry %zu header past the end", i);
        const uint8_t *p = buf + off;
        uint64_t path_len = fuzz_le32(p + 4), data_len = fuzz_le64(p + 8);
        uint64_t avail = len - off - ENTRY_HDR;
        FUZZ_CHECK(path_len <= avail && data_len <= avail - path_len, "entry %zu past the end", i);
        FUZZ_CHECK(p[0] >= MPII_ENTRY_FILE && p[0] <= MPII_ENTRY_CODE && p[1] == 0, "entry %zu kind %u/%u", i,
                   p[0], p[1]);
        const char *path = (const char *)p + ENTRY_HDR;
        FUZZ_CHECK(path_len > 0 && path[0] == '/' && memchr(path, '\0', (size_t)path_len) == NULL,
                   "entry %zu: accepted a bad path", i);
        raw[i].index = i;
        raw[i].e = (mpii_entry){(mpii_entry_kind)p[0], fuzz_le16(p + 2), path, (size_t)path_len,
                                p + ENTRY_HDR + path_len, (size_t)data_len, (int64_t)fuzz_le64(p + 16),
                                fuzz_le64(p + 24)};
        off += ENTRY_HDR + (size_t)path_len + (size_t)data_len;
    }
    FUZZ_CHECK(off == len, "accepted %zu trailing bytes", len - off);

    /* Each key's last raw entry is the one the image holds (a later entry of
     * the same kind and path replaces an earlier one); one entry per key. */
    if (n > 1)
        qsort(raw, (size_t)n, sizeof *raw, raw_cmp);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && same_key(&raw[i], &raw[i + 1]))
            continue;
        distinct++;
        char *path = dup_bytes(raw[i].e.path, raw[i].e.path_len);
        const mpii_entry *e = mpii_image_lookup(img, raw[i].e.kind, path);
        FUZZ_CHECK(e != NULL, "entry %zu (%s, kind %d) not found", raw[i].index, path, (int)raw[i].e.kind);
        FUZZ_CHECK(entries_equal(e, &raw[i].e), "entry %zu (%s) differs from its bytes", raw[i].index, path);
        free(path);
    }
    free(raw);
    size_t count = mpii_image_count(img);
    FUZZ_CHECK(count == distinct, "%zu entries for %zu distinct keys", count, distinct);

    /* Every entry, by index: well-formed, found by its key, accounted for. */
    uint64_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        const mpii_entry *e = mpii_image_entry_at(img, i);
        FUZZ_CHECK(e != NULL && e->path != NULL && e->path_len > 0 && e->path[0] == '/', "entry_at(%zu)", i);
        FUZZ_CHECK(strlen(e->path) == e->path_len, "entry %zu: path length", i);
        FUZZ_CHECK(e->flags <= UINT16_MAX && (e->data_len == 0 || e->data != NULL), "entry %zu: flags/data", i);
        FUZZ_CHECK(mpii_image_lookup(img, e->kind, e->path) == e, "entry %zu (%s): lookup", i, e->path);
        if (e->kind == MPII_ENTRY_LISTING)
            check_listing(e);
        else
            check_not_listing(e);
        bytes += e->data_len;
    }
    FUZZ_CHECK(mpii_image_entry_at(img, count) == NULL, "entry_at(count)");
    FUZZ_CHECK(mpii_image_data_bytes(img) == bytes, "data bytes %llu, sum %llu",
               (unsigned long long)mpii_image_data_bytes(img), (unsigned long long)bytes);

    /* Serialise round trip: with the same sequence and label the bytes come
     * back identical when nothing was replaced and the label has no NUL;
     * always, they parse again to the same entries, sequence and label. */
    char *label_z = dup_bytes(label, label_len);
    uint8_t *out = NULL;
    size_t out_len = 0;
    FUZZ_CHECK(mpii_image_serialize(img, seq, label_z, &out, &out_len) == MPII_OK, "serialise");
    if (count == n && memchr(label, '\0', label_len) == NULL) {
        FUZZ_CHECK(out_len == len && memcmp(out, buf, len) == 0, "re-serialised bytes differ (%zu vs %zu)",
                   out_len, len);
    } else {
        mpii_image *again = NULL;
        uint64_t seq2 = 0;
        char label2[MPII_IMAGE_LABEL_MAX + 1];
        mpii_status st = mpii_image_parse(out, out_len, &again, &seq2, label2, sizeof label2);
        FUZZ_CHECK(st == MPII_OK, "re-serialised image does not parse: %s", mpii_strerror(st));
        FUZZ_CHECK(seq2 == seq && strcmp(label2, label_z) == 0, "re-parsed sequence/label");
        FUZZ_CHECK(fuzz_images_equal(again, img), "re-parsed entries differ");
        mpii_image_destroy(again);
    }
    free(out);
    free(label_z);

    check_merge_remove(img);
}
