/* elf.c — reads the DT_NEEDED names and $ORIGIN-relative RPATH/RUNPATH
 * directories of an ELF shared object from its bytes in memory.
 *
 * Why: an extension module staged into node-local memory must find the
 * bundled libraries its $ORIGIN RPATH points at (numpy.libs/, scipy.libs/),
 * so the stager asks this reader which directories those are and stages
 * them alongside.
 *
 * How: validate the ELF header (ELF64 or ELF32, little-endian), walk the
 * program headers, find PT_DYNAMIC, read its entries (bounded by p_filesz and
 * the buffer), translate DT_STRTAB (a virtual address) to a file offset
 * through the PT_LOAD segment that holds the whole [DT_STRTAB, +DT_STRSZ)
 * range, then fetch each DT_NEEDED / DT_RPATH / DT_RUNPATH string, which must
 * be NUL-terminated inside the string table. Search-path entries using
 * $ORIGIN are expanded against origin_dir and normalised lexically, one
 * component at a time, into a PATH_MAX buffer.
 *
 * The input is untrusted (a fuzzer is pointed at it: tests/fuzz/fuzz_elf.c,
 * run by scripts/fuzz.sh under ASan/UBSan, checks elf.h's contract): every
 * field is read byte by byte from a range checked beforehand against the
 * buffer, all offset arithmetic is done in uint64_t with explicit overflow
 * checks, and the work done is bounded (MPII_ELF_MAX_NEEDED,
 * MPII_ELF_MAX_SEARCH_BYTES) so that a crafted file cannot make it quadratic.
 *
 * Library code: never prints, every allocation checked, no globals. */
#include <elf.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpiimport/elf.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* ---- bounded little-endian field reads ---------------------------------- */

/* n (1..8) bytes at p, little-endian. The caller has checked the range. */
static uint64_t rd_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i > 0; i--)
        v = (v << 8) | p[i - 1];
    return v;
}

/* Field f of a struct T (a glibc <elf.h> type) stored at data + base. */
#define FIELD(data, base, T, f) rd_le((data) + (base) + offsetof(T, f), sizeof(((T *)0)->f))

#define EHDR(v, base, f) \
    ((v)->is64 ? FIELD((v)->data, base, Elf64_Ehdr, f) : FIELD((v)->data, base, Elf32_Ehdr, f))
#define PHDR(v, base, f) \
    ((v)->is64 ? FIELD((v)->data, base, Elf64_Phdr, f) : FIELD((v)->data, base, Elf32_Phdr, f))
#define SHDR(v, base, f) \
    ((v)->is64 ? FIELD((v)->data, base, Elf64_Shdr, f) : FIELD((v)->data, base, Elf32_Shdr, f))
#define DYN(v, base, f) \
    ((v)->is64 ? FIELD((v)->data, base, Elf64_Dyn, f) : FIELD((v)->data, base, Elf32_Dyn, f))

typedef struct elf_view {
    const uint8_t *data;
    size_t len;
    bool is64;
    uint64_t phoff, phentsize, phnum; /* program header table, checked */
} elf_view;

/* [off, off + size) lies inside a buffer of len bytes (no overflow). */
static bool range_ok(uint64_t off, uint64_t size, size_t len)
{
    return off <= (uint64_t)len && size <= (uint64_t)len - off;
}

/* ---- growable string lists ---------------------------------------------- */

typedef struct strlist {
    char **items;
    size_t count, cap;
    uint64_t *hashes; /* parallel to items, only when dedup is wanted */
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    free(l->hashes);
    memset(l, 0, sizeof *l);
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Appends a copy of s[0..n) (no NUL inside). With dedup, an equal string
 * already present makes this a no-op. */
static mpii_status strlist_push(strlist *l, const char *s, size_t n, bool dedup)
{
    uint64_t h = 0;
    if (dedup) {
        h = hash_bytes(s, n);
        for (size_t i = 0; i < l->count; i++)
            if (l->hashes[i] == h && strlen(l->items[i]) == n && memcmp(l->items[i], s, n) == 0)
                return MPII_OK;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        if (cap < l->cap || cap > SIZE_MAX / sizeof(char *) || cap > SIZE_MAX / sizeof(uint64_t))
            return MPII_ERR_NOMEM;
        char **items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return MPII_ERR_NOMEM;
        l->items = items;
        if (dedup) {
            uint64_t *hashes = realloc(l->hashes, cap * sizeof *hashes);
            if (!hashes)
                return MPII_ERR_NOMEM;
            l->hashes = hashes;
        }
        l->cap = cap;
    }
    if (n == SIZE_MAX)
        return MPII_ERR_NOMEM;
    char *copy = malloc(n + 1);
    if (!copy)
        return MPII_ERR_NOMEM;
    memcpy(copy, s, n);
    copy[n] = '\0';
    if (dedup)
        l->hashes[l->count] = h;
    l->items[l->count++] = copy;
    return MPII_OK;
}

/* ---- the string table ---------------------------------------------------- */

typedef struct strtab {
    const char *base; /* inside the buffer */
    uint64_t size;
} strtab;

/* The string at offset off of the table, which must end with a NUL within
 * the table and within its first max bytes (so its length is < max). */
static mpii_status strtab_get(const strtab *st, uint64_t off, size_t max, const char **s, size_t *n)
{
    if (off >= st->size)
        return MPII_ERR_CORRUPT;
    uint64_t avail = st->size - off;
    size_t scan = avail < (uint64_t)max ? (size_t)avail : max;
    const char *p = st->base + off;
    const char *nul = memchr(p, '\0', scan);
    if (!nul)
        return MPII_ERR_CORRUPT;
    *s = p;
    *n = (size_t)(nul - p);
    return MPII_OK;
}

/* The file offset of virtual address vaddr, where size bytes must follow
 * inside the file image of a single PT_LOAD segment and inside the buffer. */
static mpii_status vaddr_to_offset(const elf_view *v, uint64_t vaddr, uint64_t size, uint64_t *off)
{
    for (uint64_t i = 0; i < v->phnum; i++) {
        uint64_t ph = v->phoff + i * v->phentsize;
        if (PHDR(v, ph, p_type) != PT_LOAD)
            continue;
        uint64_t p_vaddr = PHDR(v, ph, p_vaddr);
        uint64_t p_offset = PHDR(v, ph, p_offset);
        uint64_t p_filesz = PHDR(v, ph, p_filesz);
        if (vaddr < p_vaddr)
            continue;
        uint64_t delta = vaddr - p_vaddr;
        if (delta >= p_filesz || size > p_filesz - delta)
            continue;
        if (p_offset > (uint64_t)v->len || delta > (uint64_t)v->len - p_offset)
            return MPII_ERR_CORRUPT;
        uint64_t o = p_offset + delta;
        if (!range_ok(o, size, v->len))
            return MPII_ERR_CORRUPT;
        *off = o;
        return MPII_OK;
    }
    return MPII_ERR_CORRUPT;
}

/* ---- $ORIGIN expansion and lexical normalisation ------------------------ */

/* Builds an absolute path one character at a time, resolving "." and ".."
 * and collapsing slashes as each component ends. path holds "/a/b" (no
 * trailing slash; empty means "/"). */
typedef struct normaliser {
    char path[PATH_MAX];
    size_t len;
    char comp[PATH_MAX];
    size_t clen;
    bool started, relative, overflow;
} normaliser;

static void norm_reset(normaliser *nz)
{
    nz->len = 0;
    nz->clen = 0;
    nz->started = nz->relative = nz->overflow = false;
}

static void norm_flush(normaliser *nz)
{
    if (nz->clen == 0)
        return;
    if (nz->clen == 1 && nz->comp[0] == '.') {
        nz->clen = 0;
        return;
    }
    if (nz->clen == 2 && nz->comp[0] == '.' && nz->comp[1] == '.') {
        while (nz->len > 0 && nz->path[nz->len - 1] != '/')
            nz->len--;
        if (nz->len > 0)
            nz->len--; /* the '/' before the popped component; "/.." stays "/" */
        nz->clen = 0;
        return;
    }
    /* Room for '/', the component and, at the end, the NUL. */
    if (nz->clen >= sizeof nz->path - 1 - nz->len) {
        nz->overflow = true;
        return;
    }
    nz->path[nz->len++] = '/';
    memcpy(nz->path + nz->len, nz->comp, nz->clen);
    nz->len += nz->clen;
    nz->clen = 0;
}

static void norm_char(normaliser *nz, char c)
{
    if (nz->overflow || nz->relative)
        return;
    if (!nz->started) {
        nz->started = true;
        if (c != '/') {
            nz->relative = true;
            return;
        }
    }
    if (c == '/') {
        norm_flush(nz);
        return;
    }
    if (nz->clen >= sizeof nz->comp - 1) {
        nz->overflow = true;
        return;
    }
    nz->comp[nz->clen++] = c;
}

static bool is_ident_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* p[0..n) follows a '$'. If it is the dynamic string token name, as NAME or
 * {NAME} (NAME not followed by an identifier character, as in ld.so), the
 * number of characters it spans after the '$'; else 0. */
static size_t dst_len(const char *p, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n > 0 && p[0] == '{') {
        if (n - 1 >= k + 1 && memcmp(p + 1, name, k) == 0 && p[1 + k] == '}')
            return k + 2;
        return 0;
    }
    if (n >= k && memcmp(p, name, k) == 0 && (n == k || !is_ident_char(p[k])))
        return k;
    return 0;
}

/* One search-path entry e[0..n): if it uses $ORIGIN, expand and normalise it
 * into nz; *use says whether the result is to be kept. */
static void expand_entry(const char *e, size_t n, const char *origin, size_t origin_len,
                         normaliser *nz, bool *use)
{
    bool has_origin = false;
    norm_reset(nz);
    *use = false;
    for (size_t i = 0; i < n;) {
        if (e[i] == '$') {
            const char *rest = e + i + 1;
            size_t rn = n - i - 1;
            size_t k = dst_len(rest, rn, "ORIGIN");
            if (k > 0) {
                has_origin = true;
                for (size_t j = 0; j < origin_len; j++)
                    norm_char(nz, origin[j]);
                i += 1 + k;
                continue;
            }
            if (dst_len(rest, rn, "LIB") > 0 || dst_len(rest, rn, "PLATFORM") > 0)
                return; /* depends on the loader's platform: not resolvable here */
        }
        norm_char(nz, e[i]);
        i++;
        if (nz->overflow || nz->relative)
            return;
    }
    norm_flush(nz);
    *use = has_origin && nz->started && !nz->relative && !nz->overflow;
}

/* A ':'-separated search path s[0..n): its $ORIGIN entries go to dirs. */
static mpii_status add_search_path(strlist *dirs, const char *s, size_t n, const char *origin,
                                   size_t origin_len, normaliser *nz)
{
    size_t start = 0;
    while (start <= n) {
        const char *colon = memchr(s + start, ':', n - start);
        size_t end = colon ? (size_t)(colon - s) : n;
        bool use = false;
        if (end > start)
            expand_entry(s + start, end - start, origin, origin_len, nz, &use);
        if (use) {
            const char *p = nz->len ? nz->path : "/";
            size_t plen = nz->len ? nz->len : 1;
            mpii_status st = strlist_push(dirs, p, plen, true);
            if (st != MPII_OK)
                return st;
        }
        start = end + 1;
    }
    return MPII_OK;
}

/* ---- the reader ----------------------------------------------------------- */

/* Checks the ELF header and program header table; fills v. */
static mpii_status read_headers(const uint8_t *data, size_t len, elf_view *v)
{
    if (len < SELFMAG || memcmp(data, ELFMAG, SELFMAG) != 0)
        return MPII_ERR_INVALID;
    if (len < EI_NIDENT)
        return MPII_ERR_CORRUPT;
    if (data[EI_CLASS] == ELFCLASS64)
        v->is64 = true;
    else if (data[EI_CLASS] == ELFCLASS32)
        v->is64 = false;
    else
        return MPII_ERR_INVALID;
    if (data[EI_DATA] != ELFDATA2LSB || data[EI_VERSION] != EV_CURRENT)
        return MPII_ERR_INVALID;
    v->data = data;
    v->len = len;

    size_t ehsize = v->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    size_t phsize = v->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    size_t shsize = v->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
    if (len < ehsize)
        return MPII_ERR_CORRUPT;
    v->phoff = EHDR(v, 0, e_phoff);
    v->phentsize = EHDR(v, 0, e_phentsize);
    v->phnum = EHDR(v, 0, e_phnum);
    if (v->phnum == PN_XNUM) { /* the real count is in section header 0 */
        uint64_t shoff = EHDR(v, 0, e_shoff);
        uint64_t shentsize = EHDR(v, 0, e_shentsize);
        if (shentsize < shsize || !range_ok(shoff, shsize, len))
            return MPII_ERR_CORRUPT;
        v->phnum = SHDR(v, shoff, sh_info);
    }
    if (v->phnum == 0)
        return MPII_OK;
    if (v->phentsize < phsize || v->phoff > (uint64_t)len ||
        v->phnum > ((uint64_t)len - v->phoff) / v->phentsize)
        return MPII_ERR_CORRUPT;
    return MPII_OK;
}

mpii_status mpii_elf_deps_read(const uint8_t *data, size_t len, const char *origin_dir,
                               mpii_elf_deps *out)
{
    if (!out)
        return MPII_ERR_INVALID;
    memset(out, 0, sizeof *out);
    if (!data || !origin_dir || origin_dir[0] != '/')
        return MPII_ERR_INVALID;
    size_t origin_len = strnlen(origin_dir, PATH_MAX);
    if (origin_len >= PATH_MAX)
        return MPII_ERR_TOOLONG;

    elf_view v;
    memset(&v, 0, sizeof v);
    mpii_status st = read_headers(data, len, &v);
    if (st != MPII_OK || v.phnum == 0)
        return st;

    /* The one PT_DYNAMIC. */
    uint64_t dyn_off = 0, dyn_size = 0;
    bool have_dynamic = false;
    for (uint64_t i = 0; i < v.phnum; i++) {
        uint64_t ph = v.phoff + i * v.phentsize;
        if (PHDR(&v, ph, p_type) != PT_DYNAMIC)
            continue;
        if (have_dynamic)
            return MPII_ERR_CORRUPT;
        have_dynamic = true;
        dyn_off = PHDR(&v, ph, p_offset);
        dyn_size = PHDR(&v, ph, p_filesz);
    }
    if (!have_dynamic)
        return MPII_OK;
    if (!range_ok(dyn_off, dyn_size, len))
        return MPII_ERR_CORRUPT;
    uint64_t dynent = v.is64 ? sizeof(Elf64_Dyn) : sizeof(Elf32_Dyn);
    uint64_t ndyn = dyn_size / dynent;

    /* Pass 1: where the string table is, and whether it is needed. */
    uint64_t strtab_addr = 0, strsz = 0;
    bool have_strtab = false, have_strsz = false, wants_strings = false;
    for (uint64_t i = 0; i < ndyn; i++) {
        uint64_t d = dyn_off + i * dynent;
        uint64_t tag = DYN(&v, d, d_tag);
        uint64_t val = DYN(&v, d, d_un.d_val);
        if (tag == DT_NULL)
            break;
        if (tag == DT_STRTAB) {
            if (have_strtab && val != strtab_addr)
                return MPII_ERR_CORRUPT;
            have_strtab = true;
            strtab_addr = val;
        } else if (tag == DT_STRSZ) {
            if (have_strsz && val != strsz)
                return MPII_ERR_CORRUPT;
            have_strsz = true;
            strsz = val;
        } else if (tag == DT_NEEDED || tag == DT_RPATH || tag == DT_RUNPATH) {
            wants_strings = true;
        }
    }
    if (!wants_strings)
        return MPII_OK;
    if (!have_strtab || !have_strsz || strsz == 0)
        return MPII_ERR_CORRUPT;
    uint64_t strtab_off = 0;
    st = vaddr_to_offset(&v, strtab_addr, strsz, &strtab_off);
    if (st != MPII_OK)
        return st;
    strtab tab = {(const char *)data + strtab_off, strsz};

    normaliser *nz = malloc(sizeof *nz);
    if (!nz)
        return MPII_ERR_NOMEM;
    strlist needed = {0}, dirs = {0};
    size_t search_budget = MPII_ELF_MAX_SEARCH_BYTES;

    /* Pass 2: the strings, in order. */
    for (uint64_t i = 0; i < ndyn && st == MPII_OK; i++) {
        uint64_t d = dyn_off + i * dynent;
        uint64_t tag = DYN(&v, d, d_tag);
        uint64_t val = DYN(&v, d, d_un.d_val);
        const char *s = NULL;
        size_t n = 0;
        if (tag == DT_NULL)
            break;
        if (tag == DT_NEEDED) {
            if (needed.count >= MPII_ELF_MAX_NEEDED) {
                st = MPII_ERR_CORRUPT;
                break;
            }
            st = strtab_get(&tab, val, PATH_MAX, &s, &n);
            if (st == MPII_OK)
                st = strlist_push(&needed, s, n, false);
        } else if (tag == DT_RPATH || tag == DT_RUNPATH) {
            st = strtab_get(&tab, val, search_budget, &s, &n);
            if (st == MPII_OK) {
                search_budget -= n + 1; /* n < search_budget: the NUL was inside it */
                st = add_search_path(&dirs, s, n, origin_dir, origin_len, nz);
            }
        }
    }
    free(nz);
    if (st != MPII_OK) {
        strlist_free(&needed);
        strlist_free(&dirs);
        return st;
    }
    free(dirs.hashes);
    out->needed = needed.items;
    out->needed_count = needed.count;
    out->origin_dirs = dirs.items;
    out->origin_dir_count = dirs.count;
    return MPII_OK;
}

void mpii_elf_deps_free(mpii_elf_deps *deps)
{
    if (!deps)
        return;
    for (size_t i = 0; i < deps->needed_count; i++)
        free(deps->needed[i]);
    free(deps->needed);
    for (size_t i = 0; i < deps->origin_dir_count; i++)
        free(deps->origin_dirs[i]);
    free(deps->origin_dirs);
    memset(deps, 0, sizeof *deps);
}
