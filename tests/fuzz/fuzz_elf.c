/* fuzz_elf.c — libFuzzer target: mpii_elf_deps_read, the reader of an
 * extension module's DT_NEEDED names and $ORIGIN RPATH/RUNPATH directories
 * (core/src/elf.c), on the input as the whole file.
 *
 * Each input is read three times, with origin directories "/", a real
 * numpy one, and one of PATH_MAX - 2 bytes (so most expansions overflow),
 * from an exact-size copy (ASan sees any read past the end).
 *
 * Invariants (elf.h's contract): the status is OK, INVALID, CORRUPT or NOMEM
 * (never TOOLONG: every origin is shorter than PATH_MAX), INVALID whenever
 * the input does not start with the ELF magic, and the same for all three
 * origins; on error *out is empty; on success the DT_NEEDED list is at most
 * MPII_ELF_MAX_NEEDED names, each shorter than PATH_MAX, present in the input
 * followed by a NUL, and identical for all three origins; every origin
 * directory is absolute, lexically normal (no empty, "." or ".."
 * component, no trailing slash but for "/"), shorter than PATH_MAX, listed
 * once, and there are at most MPII_ELF_MAX_SEARCH_BYTES / 8 of them (each
 * needs "$ORIGIN" and a separator); a second read gives the same result;
 * mpii_elf_deps_free empties *out. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "mpiimport/elf.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char long_origin[PATH_MAX - 1];

static const char *origin_at(int i)
{
    if (i == 0)
        return "/";
    if (i == 1)
        return "/usr/lib/python3/dist-packages/numpy/core";
    if (long_origin[0] == '\0') { /* "/aaaa…/bbbb…/…", PATH_MAX - 2 bytes */
        size_t n = sizeof long_origin - 1;
        for (size_t k = 0; k < n; k++)
            long_origin[k] = k % 64 == 0 ? '/' : (char)('a' + (k / 64) % 26);
        long_origin[n] = '\0';
    }
    return long_origin;
}

/* needle (n bytes) followed by a NUL somewhere in hay. */
static int has_string(const uint8_t *hay, size_t hay_len, const char *needle, size_t n)
{
    if (n == 0)
        return memchr(hay, '\0', hay_len) != NULL;
    for (size_t i = 0; i + n < hay_len;) {
        /* candidates start at i .. hay_len - n - 1 */
        const uint8_t *p = memchr(hay + i, (unsigned char)needle[0], hay_len - n - i);
        if (p == NULL)
            return 0;
        size_t at = (size_t)(p - hay);
        if (memcmp(p, needle, n) == 0 && hay[at + n] == '\0')
            return 1;
        i = at + 1;
    }
    return 0;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_normal_dir(const char *d)
{
    size_t n = strnlen(d, PATH_MAX);
    if (n == 0 || n >= PATH_MAX || d[0] != '/')
        return 0;
    if (n == 1)
        return 1;
    if (d[n - 1] == '/')
        return 0;
    for (const char *c = d + 1;;) { /* each component after a '/' */
        const char *slash = strchr(c, '/');
        size_t cl = slash ? (size_t)(slash - c) : strlen(c);
        if (cl == 0 || (cl == 1 && c[0] == '.') || (cl == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!slash)
            return 1;
        c = slash + 1;
    }
}

static int lists_equal(char **a, size_t an, char **b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static void check_deps(const uint8_t *buf, size_t size, const mpii_elf_deps *d, const char *origin)
{
    FUZZ_CHECK(d->needed_count <= MPII_ELF_MAX_NEEDED, "%zu needed", d->needed_count);
    FUZZ_CHECK(d->needed_count == 0 || d->needed != NULL, "needed list missing");
    for (size_t i = 0; i < d->needed_count; i++) {
        FUZZ_CHECK(d->needed[i] != NULL, "needed[%zu] NULL", i);
        size_t n = strnlen(d->needed[i], PATH_MAX);
        FUZZ_CHECK(n < PATH_MAX, "needed[%zu] too long", i);
        FUZZ_CHECK(has_string(buf, size, d->needed[i], n), "needed[%zu] \"%s\" is not a string of the file", i,
                   d->needed[i]);
    }
    FUZZ_CHECK(d->origin_dir_count <= MPII_ELF_MAX_SEARCH_BYTES / 8, "%zu origin dirs", d->origin_dir_count);
    FUZZ_CHECK(d->origin_dir_count == 0 || d->origin_dirs != NULL, "origin dir list missing");
    for (size_t i = 0; i < d->origin_dir_count; i++) {
        FUZZ_CHECK(d->origin_dirs[i] != NULL && is_normal_dir(d->origin_dirs[i]),
                   "origin dir %zu \"%.200s\" (origin %.40s) not absolute and normal", i,
                   d->origin_dirs[i] ? d->origin_dirs[i] : "(null)", origin);
    }
    if (d->origin_dir_count > 1) { /* listed once: no two equal after sorting */
        char **sorted = malloc(d->origin_dir_count * sizeof *sorted);
        FUZZ_CHECK(sorted != NULL, "out of memory");
        memcpy(sorted, d->origin_dirs, d->origin_dir_count * sizeof *sorted);
        qsort(sorted, d->origin_dir_count, sizeof *sorted, str_ptr_cmp);
        for (size_t i = 1; i < d->origin_dir_count; i++)
            FUZZ_CHECK(strcmp(sorted[i - 1], sorted[i]) != 0, "origin dir \"%.200s\" listed twice", sorted[i]);
        free(sorted);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    if (size)
        memcpy(buf, data, size);

    mpii_elf_deps deps[3];
    mpii_status st[3];
    for (int i = 0; i < 3; i++) {
        memset(&deps[i], 0xA5, sizeof deps[i]); /* garbage: the reader must reset it */
        st[i] = mpii_elf_deps_read(buf, size, origin_at(i), &deps[i]);
        FUZZ_CHECK(st[i] == MPII_OK || st[i] == MPII_ERR_INVALID || st[i] == MPII_ERR_CORRUPT ||
                       st[i] == MPII_ERR_NOMEM,
                   "status %d (%s)", (int)st[i], mpii_strerror(st[i]));
        if (size < 4 || memcmp(buf, "\177ELF", 4) != 0)
            FUZZ_CHECK(st[i] == MPII_ERR_INVALID, "not ELF, yet %s", mpii_strerror(st[i]));
        if (st[i] != MPII_OK)
            FUZZ_CHECK(deps[i].needed == NULL && deps[i].needed_count == 0 && deps[i].origin_dirs == NULL &&
                           deps[i].origin_dir_count == 0,
                       "*out not empty on %s", mpii_strerror(st[i]));
        else
            check_deps(buf, size, &deps[i], origin_at(i));
    }
    FUZZ_CHECK(st[0] == st[1] && st[1] == st[2], "status depends on the origin: %d %d %d", (int)st[0],
               (int)st[1], (int)st[2]);
    if (st[0] == MPII_OK) {
        for (int i = 1; i < 3; i++)
            FUZZ_CHECK(lists_equal(deps[0].needed, deps[0].needed_count, deps[i].needed, deps[i].needed_count),
                       "DT_NEEDED depends on the origin");
        /* Deterministic: a second read gives the same lists. */
        mpii_elf_deps again;
        FUZZ_CHECK(mpii_elf_deps_read(buf, size, origin_at(1), &again) == MPII_OK, "second read failed");
        FUZZ_CHECK(lists_equal(again.needed, again.needed_count, deps[1].needed, deps[1].needed_count) &&
                       lists_equal(again.origin_dirs, again.origin_dir_count, deps[1].origin_dirs,
                                   deps[1].origin_dir_count),
                   "second read differs");
        mpii_elf_deps_free(&again);
    }
    for (int i = 0; i < 3; i++) {
        mpii_elf_deps_free(&deps[i]);
        FUZZ_CHECK(deps[i].needed == NULL && deps[i].needed_count == 0 && deps[i].origin_dirs == NULL &&
                       deps[i].origin_dir_count == 0,
                   "not empty after free");
    }
    free(buf);
    return 0;
}
