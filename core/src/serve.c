/* serve.c — a node's ranks serve file bytes from the node's stage.
 *
 * Rank 0 does the same with what it read, once it has sent it. Only node
 * leaders receive messages (node_index.c): what they stage here, the other
 * ranks of the node find through the node's index.
 *
 * A non-root rank that receives a message does not keep the bytes of the
 * files in it: each file is written once per node into the node's stage, at
 * its original path under the stage root (stage.c: O_EXCL writer, the others
 * wait), checked byte for byte, and the rank keeps only the fact (path, size,
 * mtime, MPII_FILE_STAGED). Whoever needs the bytes later (a module's
 * bytecode, an extension's ELF header, get_data) reads the staged file: the
 * page cache holds one copy per node, shared by every rank on it, instead of
 * one private copy per rank. A file the stage cannot take (a full /dev/shm,
 * another version of the same path already staged) stays in memory, as
 * before: slower on memory, never wrong. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "context_internal.h"
#include "mpiimport/util.h"

mpii_status mpii_ctx_open_stage(mpii_context *ctx)
{
    if (ctx->stage != NULL)
        return MPII_OK;
    mpii_status st = mpii_stage_open(ctx->stage_root, &ctx->stage);
    if (st != MPII_OK) {
        ctx->stage_errno = st == MPII_ERR_UNSAFE ? 0 : errno;
        ctx->stage = NULL;
    }
    return st;
}

static int staged_path(const mpii_context *ctx, const char *path, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", ctx->stage_root, path);
    return n > 0 && (size_t)n < cap;
}

/* Does the staged copy of path hold exactly data[0..len)? */
static int staged_equals(const char *staged, const uint8_t *data, size_t len)
{
    int fd = open(staged, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct stat sb;
    int same = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == len;
    if (same && len > 0) {
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        same = m != MAP_FAILED && memcmp(m, data, len) == 0;
        if (m != MAP_FAILED && munmap(m, len) != 0)
            same = 0;
    }
    if (close(fd) != 0)
        same = 0;
    return same;
}

/* One file of a message into the stage; MPII_OK when the stage holds it. */
static mpii_status stage_bytes(mpii_context *ctx, const mpii_entry *e)
{
    char staged[MPII_PATH_MAX], probe[MPII_PATH_MAX];
    if (!staged_path(ctx, e->path, probe, sizeof probe))
        return MPII_ERR_TOOLONG;
    struct stat before;
    int existed = lstat(probe, &before) == 0;
    mpii_status st = mpii_stage_file(ctx->stage, e->path, e->data, e->data_len, ctx->cfg.timeout_s,
                                     staged, sizeof staged);
    if (st != MPII_OK)
        return st;
    if (!staged_equals(staged, e->data, e->data_len))
        return MPII_ERR_UNSAFE; /* another version of this path is staged: keep ours in memory */
    if (!existed) {
        ctx->stats.staged_files++;
        ctx->stats.staged_bytes += e->data_len;
    }
    return MPII_OK;
}

/* The staged file's entry e of img becomes its fact alone (replaced in place:
 * same kind and path). */
static mpii_status keep_fact_only(mpii_image *img, const mpii_entry *e)
{
    mpii_entry fact = *e;
    fact.flags |= MPII_FILE_STAGED;
    fact.data = NULL;
    fact.data_len = 0;
    return mpii_image_add(img, &fact);
}

/* Copies of the dropped bytes are freed soon (the message, the outgoing
 * image): give the pages back then, rather than keep them as this rank's
 * private memory. */
static void note_dropped(mpii_context *ctx, uint64_t dropped)
{
#ifdef __GLIBC__
    if (dropped >= (1u << 20))
        ctx->trim_after_merge = 1;
#else
    (void)ctx;
    (void)dropped;
#endif
}

void mpii_ctx_serve_from_stage(mpii_context *ctx, mpii_image *msg)
{
    /* MPII_FILE_STAGED is a local note only, never taken from a message
     * (the node's index, read from this node's stage, is not a message: see
     * node_index.c) */
    for (size_t i = 0; i < mpii_image_count(msg); i++) {
        const mpii_entry *e = mpii_image_entry_at(msg, i);
        if (e->kind == MPII_ENTRY_FILE && (e->flags & MPII_FILE_STAGED)) {
            mpii_entry plain = *e;
            plain.flags &= ~MPII_FILE_STAGED;
            if (mpii_image_add(msg, &plain) != MPII_OK) /* replaced in place */
                return;
        }
    }
    if (ctx->rank == 0 || ctx->size < 2 || mpii_ctx_open_stage(ctx) != MPII_OK)
        return;
    uint64_t dropped = 0;
    for (size_t i = 0; i < mpii_image_count(msg); i++) {
        const mpii_entry *e = mpii_image_entry_at(msg, i);
        if (e->kind != MPII_ENTRY_FILE || (e->flags & (MPII_FILE_STAT_ONLY | MPII_FILE_DATA_OMITTED)) ||
            e->data_len == 0 || stage_bytes(ctx, e) != MPII_OK)
            continue;
        dropped += e->data_len;
        if (keep_fact_only(msg, e) != MPII_OK)
            break;
    }
    note_dropped(ctx, dropped);
}

void mpii_ctx_serve_sent(mpii_context *ctx)
{
    if (ctx->rank != 0 || ctx->size < 2 || mpii_ctx_open_stage(ctx) != MPII_OK)
        return;
    uint64_t dropped = 0;
    for (size_t i = 0; i < mpii_image_count(ctx->outgoing); i++) {
        const mpii_entry *sent = mpii_image_entry_at(ctx->outgoing, i);
        if (sent->kind != MPII_ENTRY_FILE || (sent->flags & MPII_FILE_STAT_ONLY) || sent->data_len == 0)
            continue;
        const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_FILE, sent->path);
        if (e == NULL || (e->flags & MPII_FILE_STAT_ONLY))
            continue;
        if (!(e->flags & MPII_FILE_STAGED)) {
            if (e->data_len == 0 || stage_bytes(ctx, e) != MPII_OK)
                continue;
            dropped += e->data_len;
            if (keep_fact_only(ctx->known, e) != MPII_OK)
                break;
        }
        /* The message is serialised already: what is left of the outgoing
         * image is its facts, for the node's index (node_index.c). */
        if (keep_fact_only(ctx->outgoing, sent) != MPII_OK)
            break;
    }
    note_dropped(ctx, dropped);
}

void mpii_ctx_trim(mpii_context *ctx)
{
#ifdef __GLIBC__
    if (ctx->trim_after_merge) {
        ctx->trim_after_merge = 0;
        (void)malloc_trim(0);
    }
#else
    (void)ctx;
#endif
}

/* The staged bytes of e into dst (e->size bytes), checked against the fact. */
static mpii_status read_staged(mpii_context *ctx, const mpii_entry *e, uint8_t *dst)
{
    char staged[MPII_PATH_MAX];
    if (!staged_path(ctx, e->path, staged, sizeof staged))
        return MPII_ERR_TOOLONG;
    int fd = open(staged, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? MPII_ERR_NOTFOUND : MPII_ERR_IO;
    struct stat sb;
    mpii_status st = MPII_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size)
        st = MPII_ERR_CORRUPT; /* the stage changed under us: never serve other bytes */
    if (st == MPII_OK)
        st = mpii_read_full(fd, dst, (size_t)e->size);
    if (close(fd) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    return st;
}

size_t mpii_context_entry_size(const mpii_entry *e)
{
    if (e == NULL)
        return 0;
    return e->kind == MPII_ENTRY_FILE && (e->flags & MPII_FILE_STAGED) ? (size_t)e->size : e->data_len;
}

mpii_status mpii_context_entry_read(mpii_context *ctx, const mpii_entry *e, uint8_t *dst, size_t len)
{
    if (ctx == NULL || e == NULL || (dst == NULL && len > 0) || len != mpii_context_entry_size(e))
        return MPII_ERR_INVALID;
    if (e->kind == MPII_ENTRY_FILE && (e->flags & MPII_FILE_STAGED))
        return read_staged(ctx, e, dst);
    if (len > 0)
        memcpy(dst, e->data, len);
    return MPII_OK;
}

mpii_status mpii_context_entry_bytes(mpii_context *ctx, const mpii_entry *e, const uint8_t **data,
                                     size_t *len, void **owned)
{
    if (ctx == NULL || e == NULL || data == NULL || len == NULL || owned == NULL)
        return MPII_ERR_INVALID;
    *owned = NULL;
    if (!(e->flags & MPII_FILE_STAGED) || e->kind != MPII_ENTRY_FILE) {
        *data = e->data;
        *len = e->data_len;
        return MPII_OK;
    }
    size_t want = (size_t)e->size;
    uint8_t *buf = malloc(want ? want : 1);
    if (buf == NULL)
        return MPII_ERR_NOMEM;
    mpii_status st = read_staged(ctx, e, buf);
    if (st != MPII_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *len = want;
    *owned = buf;
    return MPII_OK;
}
