/* image.c — the in-memory image (entries indexed by kind and path) and its
 * versioned, checksummed wire format. See image.h for the layout. */
#include <stdlib.h>
#include <string.h>

#include "mpiimport/checksum.h"
#include "mpiimport/image.h"
#include "mpiimport/util.h"

static const unsigned char image_magic[8] = {'M', 'P', 'I', 'I', 'M', 'G', '\r', '\n'};

/* One entry and what it owns. `e` is first so a const mpii_entry * handed out
 * by an image converts back to its slot. */
struct slot {
    mpii_entry e;
    void *storage;        /* path + NUL + data, one allocation */
    uint32_t *names;      /* LISTING: offsets of each record, sorted by name (lookups) */
    uint32_t *order;      /* LISTING: offsets of each record, as stored (the directory's order) */
    size_t name_count;
};

struct mpii_image {
    struct slot *slots;
    size_t count, cap;
    size_t *table;        /* open addressing: slot index + 1, 0 = empty */
    size_t table_cap;     /* power of two */
    uint64_t data_bytes;
};

static uint64_t key_hash(mpii_entry_kind kind, const char *path, size_t len)
{
    return mpii_checksum64(path, len, (uint64_t)kind);
}

mpii_status mpii_image_create(mpii_image **out)
{
    if (out == NULL)
        return MPII_ERR_INVALID;
    mpii_image *img = calloc(1, sizeof *img);
    if (img == NULL)
        return MPII_ERR_NOMEM;
    *out = img;
    return MPII_OK;
}

static void slot_free(struct slot *s)
{
    free(s->storage);
    free(s->names);
    free(s->order);
    memset(s, 0, sizeof *s);
}

void mpii_image_clear(mpii_image *img)
{
    if (img == NULL)
        return;
    for (size_t i = 0; i < img->count; i++)
        slot_free(&img->slots[i]);
    img->count = 0;
    img->data_bytes = 0;
    if (img->table != NULL)
        memset(img->table, 0, img->table_cap * sizeof *img->table);
}

void mpii_image_destroy(mpii_image *img)
{
    if (img == NULL)
        return;
    mpii_image_clear(img);
    free(img->slots);
    free(img->table);
    free(img);
}

/* Index of the slot with this key, or (size_t)-1. */
static size_t find_slot(const mpii_image *img, mpii_entry_kind kind, const char *path, size_t len)
{
    if (img->table_cap == 0)
        return (size_t)-1;
    size_t mask = img->table_cap - 1;
    for (size_t i = (size_t)key_hash(kind, path, len) & mask;; i = (i + 1) & mask) {
        size_t v = img->table[i];
        if (v == 0)
            return (size_t)-1;
        const mpii_entry *e = &img->slots[v - 1].e;
        if (e->kind == kind && e->path_len == len && memcmp(e->path, path, len) == 0)
            return v - 1;
    }
}

static void table_insert(mpii_image *img, size_t index)
{
    const mpii_entry *e = &img->slots[index].e;
    size_t mask = img->table_cap - 1;
    size_t i = (size_t)key_hash(e->kind, e->path, e->path_len) & mask;
    while (img->table[i] != 0)
        i = (i + 1) & mask;
    img->table[i] = index + 1;
}

static mpii_status grow(mpii_image *img)
{
    if (img->count == img->cap) {
        size_t cap = img->cap ? img->cap * 2 : 64;
        struct slot *s = realloc(img->slots, cap * sizeof *s);
        if (s == NULL)
            return MPII_ERR_NOMEM;
        img->slots = s;
        img->cap = cap;
    }
    if ((img->count + 1) * 2 > img->table_cap) {
        size_t cap = img->table_cap ? img->table_cap * 2 : 128;
        size_t *t = calloc(cap, sizeof *t);
        if (t == NULL)
            return MPII_ERR_NOMEM;
        free(img->table);
        img->table = t;
        img->table_cap = cap;
        for (size_t i = 0; i < img->count; i++)
            table_insert(img, i);
    }
    return MPII_OK;
}

void mpii_image_remove(mpii_image *img, mpii_entry_kind kind, const char *path)
{
    if (img == NULL || path == NULL)
        return;
    size_t at = find_slot(img, kind, path, strlen(path));
    if (at == (size_t)-1)
        return;
    img->data_bytes -= img->slots[at].e.data_len;
    slot_free(&img->slots[at]);
    img->count--;
    if (at != img->count)
        img->slots[at] = img->slots[img->count];
    /* Open addressing: rebuild the table rather than leave a hole in a probe chain. */
    memset(img->table, 0, img->table_cap * sizeof *img->table);
    for (size_t i = 0; i < img->count; i++)
        table_insert(img, i);
}

static int name_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c != 0)
        return c;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* Sorts offsets (of records in d) by name: a heap sort (no allocation, no
 * recursion, O(n log n) on any input). */
static int record_cmp(const uint8_t *d, uint32_t a, uint32_t b)
{
    return name_cmp(d + a + 3, mpii_get_u16(d + a + 1), d + b + 3, mpii_get_u16(d + b + 1));
}

static void sift_down(const uint8_t *d, uint32_t *v, size_t at, size_t n)
{
    for (;;) {
        size_t child = 2 * at + 1;
        if (child >= n)
            return;
        if (child + 1 < n && record_cmp(d, v[child], v[child + 1]) < 0)
            child++;
        if (record_cmp(d, v[at], v[child]) >= 0)
            return;
        uint32_t t = v[at];
        v[at] = v[child];
        v[child] = t;
        at = child;
    }
}

static void sort_records(const uint8_t *d, uint32_t *v, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(d, v, i, n);
    for (size_t end = n; end-- > 1;) {
        uint32_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down(d, v, 0, end);
    }
}

/* Builds the record indexes of an encoded listing (its records in the
 * directory's own order, as read from it; and sorted by name, for lookups);
 * checks bounds, types and uniqueness. */
static mpii_status index_listing(struct slot *s)
{
    const uint8_t *d = s->e.data;
    size_t len = s->e.data_len, n = 0;
    for (size_t off = 0; off < len; n++) {
        if (len - off < 3)
            return MPII_ERR_CORRUPT;
        size_t nl = mpii_get_u16(d + off + 1);
        if (nl == 0 || len - off - 3 < nl)
            return MPII_ERR_CORRUPT;
        off += 3 + nl;
    }
    if (n > UINT32_MAX || len > UINT32_MAX)
        return MPII_ERR_CORRUPT;
    uint32_t *names = n ? malloc(n * sizeof *names) : NULL;
    uint32_t *order = n ? malloc(n * sizeof *order) : NULL;
    if (n && (names == NULL || order == NULL)) {
        free(names);
        free(order);
        return MPII_ERR_NOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t type = d[off];
        size_t nl = mpii_get_u16(d + off + 1);
        uint8_t base = (uint8_t)(type & ~MPII_DIRENT_LINK);
        if (base < MPII_DIRENT_FILE || base > MPII_DIRENT_OTHER || memchr(d + off + 3, '\0', nl) != NULL ||
            memchr(d + off + 3, '/', nl) != NULL) {
            free(names);
            free(order);
            return MPII_ERR_CORRUPT;
        }
        names[i] = order[i] = (uint32_t)off;
        off += 3 + nl;
    }
    sort_records(d, names, n);
    for (size_t i = 1; i < n; i++)
        if (record_cmp(d, names[i - 1], names[i]) == 0) {
            free(names);
            free(order);
            return MPII_ERR_CORRUPT; /* a name twice */
        }
    s->names = names;
    s->order = order;
    s->name_count = n;
    return MPII_OK;
}

mpii_status mpii_image_add(mpii_image *img, const mpii_entry *entry)
{
    if (img == NULL || entry == NULL || entry->path == NULL)
        return MPII_ERR_INVALID;
    if (entry->kind < MPII_ENTRY_FILE || entry->kind > MPII_ENTRY_CODE || entry->path_len == 0 ||
        entry->path[0] != '/' || memchr(entry->path, '\0', entry->path_len) != NULL ||
        entry->path_len > UINT32_MAX || entry->flags > UINT16_MAX ||
        (entry->data_len > 0 && entry->data == NULL))
        return MPII_ERR_INVALID;
    if (entry->path_len + 1 + entry->data_len < entry->data_len)
        return MPII_ERR_NOMEM;

    struct slot s = {0};
    s.storage = malloc(entry->path_len + 1 + entry->data_len);
    if (s.storage == NULL)
        return MPII_ERR_NOMEM;
    char *path = s.storage;
    memcpy(path, entry->path, entry->path_len);
    path[entry->path_len] = '\0';
    uint8_t *data = (uint8_t *)s.storage + entry->path_len + 1;
    if (entry->data_len > 0)
        memcpy(data, entry->data, entry->data_len);
    s.e = *entry;
    s.e.path = path;
    s.e.data = entry->data_len ? data : NULL;
    if (s.e.kind == MPII_ENTRY_LISTING) {
        mpii_status st = index_listing(&s);
        if (st != MPII_OK) {
            free(s.storage);
            return st;
        }
    }

    size_t at = find_slot(img, entry->kind, entry->path, entry->path_len);
    if (at != (size_t)-1) {
        img->data_bytes -= img->slots[at].e.data_len;
        slot_free(&img->slots[at]);
        img->slots[at] = s;
    } else {
        mpii_status st = grow(img);
        if (st != MPII_OK) {
            free(s.storage);
            free(s.names);
            free(s.order);
            return st;
        }
        img->slots[img->count] = s;
        table_insert(img, img->count);
        img->count++;
    }
    img->data_bytes += s.e.data_len;
    return MPII_OK;
}

mpii_status mpii_image_add_file(mpii_image *img, const char *path, const void *data, size_t len,
                                int64_t mtime_ns, uint64_t size, uint32_t flags)
{
    if (path == NULL)
        return MPII_ERR_INVALID;
    mpii_entry e = {MPII_ENTRY_FILE, flags, path, strlen(path), data, len, mtime_ns, size};
    return mpii_image_add(img, &e);
}

mpii_status mpii_image_add_miss(mpii_image *img, const char *path, uint32_t flags)
{
    if (path == NULL)
        return MPII_ERR_INVALID;
    mpii_entry e = {MPII_ENTRY_MISS, flags, path, strlen(path), NULL, 0, 0, 0};
    return mpii_image_add(img, &e);
}

mpii_status mpii_image_add_code(mpii_image *img, const char *source_path, const void *code,
                                size_t len, int64_t mtime_ns, uint64_t size)
{
    if (source_path == NULL)
        return MPII_ERR_INVALID;
    mpii_entry e = {MPII_ENTRY_CODE, 0, source_path, strlen(source_path), code, len, mtime_ns, size};
    return mpii_image_add(img, &e);
}

struct name_ref {
    const char *name;
    size_t len;
    mpii_dirent_type type;
};

mpii_status mpii_image_add_listing(mpii_image *img, const char *dir, const char *const *names,
                                   const mpii_dirent_type *types, size_t count)
{
    return mpii_image_add_listing_at(img, dir, names, types, count, 0);
}

mpii_status mpii_image_add_listing_at(mpii_image *img, const char *dir, const char *const *names,
                                      const mpii_dirent_type *types, size_t count, int64_t mtime_ns)
{
    if (dir == NULL || (count > 0 && (names == NULL || types == NULL)))
        return MPII_ERR_INVALID;
    struct name_ref *refs = count ? malloc(count * sizeof *refs) : NULL;
    if (count && refs == NULL)
        return MPII_ERR_NOMEM;
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        size_t nl = names[i] ? strlen(names[i]) : 0;
        int base = (int)types[i] & ~MPII_DIRENT_LINK;
        if (nl == 0 || nl > UINT16_MAX || base < MPII_DIRENT_FILE || base > MPII_DIRENT_OTHER) {
            free(refs);
            return MPII_ERR_INVALID;
        }
        refs[i] = (struct name_ref){names[i], nl, types[i]};
        total += 3 + nl;
    }
    uint8_t *buf = total ? malloc(total) : NULL;
    if (total && buf == NULL) {
        free(refs);
        return MPII_ERR_NOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        buf[off] = (uint8_t)refs[i].type;
        mpii_put_u16(buf + off + 1, (uint16_t)refs[i].len);
        memcpy(buf + off + 3, refs[i].name, refs[i].len);
        off += 3 + refs[i].len;
    }
    free(refs);
    mpii_entry e = {MPII_ENTRY_LISTING, 0, dir, strlen(dir), buf, total, mtime_ns, 0};
    mpii_status st = mpii_image_add(img, &e); /* rejects duplicate names */
    free(buf);
    return st == MPII_ERR_CORRUPT ? MPII_ERR_INVALID : st; /* the caller's names, not a buffer */
}

const mpii_entry *mpii_image_lookup(const mpii_image *img, mpii_entry_kind kind, const char *path)
{
    if (img == NULL || path == NULL)
        return NULL;
    size_t at = find_slot(img, kind, path, strlen(path));
    return at == (size_t)-1 ? NULL : &img->slots[at].e;
}

size_t mpii_image_count(const mpii_image *img) { return img ? img->count : 0; }

const mpii_entry *mpii_image_entry_at(const mpii_image *img, size_t index)
{
    return (img && index < img->count) ? &img->slots[index].e : NULL;
}

uint64_t mpii_image_data_bytes(const mpii_image *img) { return img ? img->data_bytes : 0; }

mpii_status mpii_image_merge(mpii_image *dst, const mpii_image *src)
{
    if (dst == NULL || src == NULL)
        return MPII_ERR_INVALID;
    for (size_t i = 0; i < src->count; i++) {
        mpii_status st = mpii_image_add(dst, &src->slots[i].e);
        if (st != MPII_OK)
            return st;
    }
    return MPII_OK;
}

/* ---- listings ---- */

size_t mpii_listing_count(const mpii_entry *listing)
{
    if (listing == NULL || listing->kind != MPII_ENTRY_LISTING)
        return 0;
    return ((const struct slot *)(const void *)listing)->name_count;
}

/* The stored type byte of name (with MPII_DIRENT_LINK), or 0. */
static int listing_type(const mpii_entry *listing, const char *name)
{
    if (listing == NULL || name == NULL || listing->kind != MPII_ENTRY_LISTING)
        return 0;
    const struct slot *s = (const struct slot *)(const void *)listing;
    size_t nl = strlen(name), lo = 0, hi = s->name_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint8_t *r = s->e.data + s->names[mid];
        int c = name_cmp(r + 3, mpii_get_u16(r + 1), (const uint8_t *)name, nl);
        if (c == 0)
            return r[0];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int mpii_listing_find(const mpii_entry *listing, const char *name)
{
    return listing_type(listing, name) & ~MPII_DIRENT_LINK;
}

int mpii_listing_is_link(const mpii_entry *listing, const char *name)
{
    int t = listing_type(listing, name);
    return t == 0 ? -1 : (t & MPII_DIRENT_LINK) != 0;
}

mpii_status mpii_listing_at(const mpii_entry *listing, size_t index, const char **name,
                            size_t *len, mpii_dirent_type *type)
{
    if (listing == NULL || listing->kind != MPII_ENTRY_LISTING || name == NULL || len == NULL ||
        type == NULL)
        return MPII_ERR_INVALID;
    const struct slot *s = (const struct slot *)(const void *)listing;
    if (index >= s->name_count)
        return MPII_ERR_INVALID;
    const uint8_t *r = s->e.data + s->order[index];
    *type = (mpii_dirent_type)(r[0] & ~MPII_DIRENT_LINK);
    *len = mpii_get_u16(r + 1);
    *name = (const char *)r + 3;
    return MPII_OK;
}

/* ---- wire format ---- */

#define ENTRY_HEADER 32u

mpii_status mpii_image_serialize(const mpii_image *img, uint64_t sequence, const char *label,
                                 uint8_t **out, size_t *out_len)
{
    if (img == NULL || out == NULL || out_len == NULL)
        return MPII_ERR_INVALID;
    size_t label_len = label ? strlen(label) : 0;
    if (label_len > MPII_IMAGE_LABEL_MAX)
        label_len = MPII_IMAGE_LABEL_MAX;
    size_t payload = 2 + label_len;
    for (size_t i = 0; i < img->count; i++)
        payload += ENTRY_HEADER + img->slots[i].e.path_len + img->slots[i].e.data_len;
    uint8_t *buf = malloc(MPII_IMAGE_HEADER_SIZE + payload);
    if (buf == NULL)
        return MPII_ERR_NOMEM;

    uint8_t *p = buf + MPII_IMAGE_HEADER_SIZE;
    mpii_put_u16(p, (uint16_t)label_len);
    if (label_len)
        memcpy(p + 2, label, label_len);
    p += 2 + label_len;
    for (size_t i = 0; i < img->count; i++) {
        const mpii_entry *e = &img->slots[i].e;
        p[0] = (uint8_t)e->kind;
        p[1] = 0;
        mpii_put_u16(p + 2, (uint16_t)e->flags);
        mpii_put_u32(p + 4, (uint32_t)e->path_len);
        mpii_put_u64(p + 8, (uint64_t)e->data_len);
        mpii_put_u64(p + 16, (uint64_t)e->mtime_ns);
        mpii_put_u64(p + 24, e->size);
        memcpy(p + ENTRY_HEADER, e->path, e->path_len);
        if (e->data_len)
            memcpy(p + ENTRY_HEADER + e->path_len, e->data, e->data_len);
        p += ENTRY_HEADER + e->path_len + e->data_len;
    }

    memcpy(buf, image_magic, sizeof image_magic);
    mpii_put_u32(buf + 8, MPII_IMAGE_VERSION);
    mpii_put_u32(buf + 12, 0);
    mpii_put_u64(buf + 16, sequence);
    mpii_put_u64(buf + 24, (uint64_t)img->count);
    mpii_put_u64(buf + 32, (uint64_t)payload);
    uint64_t seed = mpii_checksum64(buf, 40, 0);
    mpii_put_u64(buf + 40, mpii_checksum64(buf + MPII_IMAGE_HEADER_SIZE, payload, seed));
    *out = buf;
    *out_len = MPII_IMAGE_HEADER_SIZE + payload;
    return MPII_OK;
}

mpii_status mpii_image_parse(const uint8_t *buf, size_t len, mpii_image **out, uint64_t *sequence,
                             char *label, size_t label_cap)
{
    if (out == NULL || (buf == NULL && len > 0))
        return MPII_ERR_INVALID;
    *out = NULL;
    if (len < MPII_IMAGE_HEADER_SIZE)
        return MPII_ERR_TRUNCATED;
    if (memcmp(buf, image_magic, sizeof image_magic) != 0)
        return MPII_ERR_CORRUPT;
    if (mpii_get_u32(buf + 8) != MPII_IMAGE_VERSION)
        return MPII_ERR_VERSION;
    if (mpii_get_u32(buf + 12) != 0)
        return MPII_ERR_CORRUPT;
    uint64_t count = mpii_get_u64(buf + 24), payload = mpii_get_u64(buf + 32);
    if (payload > len - MPII_IMAGE_HEADER_SIZE)
        return MPII_ERR_TRUNCATED;
    if (payload < len - MPII_IMAGE_HEADER_SIZE)
        return MPII_ERR_CORRUPT;
    uint64_t seed = mpii_checksum64(buf, 40, 0);
    if (mpii_checksum64(buf + MPII_IMAGE_HEADER_SIZE, (size_t)payload, seed) != mpii_get_u64(buf + 40))
        return MPII_ERR_CHECKSUM;

    const uint8_t *p = buf + MPII_IMAGE_HEADER_SIZE, *end = p + payload;
    if (end - p < 2)
        return MPII_ERR_CORRUPT;
    size_t label_len = mpii_get_u16(p);
    if (label_len > MPII_IMAGE_LABEL_MAX || (size_t)(end - p - 2) < label_len)
        return MPII_ERR_CORRUPT;
    if (label != NULL && label_cap > 0) {
        size_t n = label_len < label_cap - 1 ? label_len : label_cap - 1;
        memcpy(label, p + 2, n);
        label[n] = '\0';
    }
    p += 2 + label_len;

    mpii_image *img;
    mpii_status st = mpii_image_create(&img);
    if (st != MPII_OK)
        return st;
    char *path = NULL;
    size_t path_cap = 0;
    for (uint64_t i = 0; i < count; i++) {
        if ((size_t)(end - p) < ENTRY_HEADER) {
            st = MPII_ERR_CORRUPT;
            break;
        }
        mpii_entry e;
        e.kind = (mpii_entry_kind)p[0];
        e.flags = mpii_get_u16(p + 2);
        e.path_len = mpii_get_u32(p + 4);
        uint64_t data_len = mpii_get_u64(p + 8);
        e.mtime_ns = (int64_t)mpii_get_u64(p + 16);
        e.size = mpii_get_u64(p + 24);
        size_t avail = (size_t)(end - p) - ENTRY_HEADER;
        if (p[1] != 0 || e.path_len > avail || data_len > avail - e.path_len) {
            st = MPII_ERR_CORRUPT;
            break;
        }
        e.data_len = (size_t)data_len;
        if (e.path_len + 1 > path_cap) {
            char *np = realloc(path, e.path_len + 1);
            if (np == NULL) {
                st = MPII_ERR_NOMEM;
                break;
            }
            path = np;
            path_cap = e.path_len + 1;
        }
        memcpy(path, p + ENTRY_HEADER, e.path_len);
        path[e.path_len] = '\0';
        e.path = path;
        e.data = p + ENTRY_HEADER + e.path_len;
        st = mpii_image_add(img, &e);
        if (st == MPII_ERR_INVALID)
            st = MPII_ERR_CORRUPT;
        if (st != MPII_OK)
            break;
        p += ENTRY_HEADER + e.path_len + e.data_len;
    }
    free(path);
    if (st == MPII_OK && p != end)
        st = MPII_ERR_CORRUPT;
    if (st != MPII_OK) {
        mpii_image_destroy(img);
        return st;
    }
    if (sequence != NULL)
        *sequence = mpii_get_u64(buf + 16);
    *out = img;
    return MPII_OK;
}
