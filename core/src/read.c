/* read.c — the READ stage: what a rank that reads itself (the root; every
 * rank once frozen) takes from the file system to fill a gap in the
 * knowledge. A directory's listing (symlinks resolved), a file's bytes or
 * only its stat, a module's code (the valid .pyc, or the code the root
 * compiled, or "compile it"), and the replay of a recorded list or packed
 * image, which is reading again what an earlier run read, reusing what is
 * unchanged. Facts read join the knowledge (and, while there are messages,
 * the outgoing one) through mpii_ctx_record (context.c); a listing in place. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context_internal.h"
#include "mpiimport/pyc.h"
#include "mpiimport/util.h"

static int64_t stat_mtime(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

/* ---- listings and files ---- */

static mpii_dirent_type classify(int dirfd, const struct dirent *d, mpii_stats *stats)
{
    switch (d->d_type) {
    case DT_REG: return MPII_DIRENT_FILE;
    case DT_DIR: return MPII_DIRENT_DIR;
    case DT_LNK:
    case DT_UNKNOWN: {
        struct stat st;
        stats->fs_calls++;
        if (fstatat(dirfd, d->d_name, &st, 0) != 0)
            return MPII_DIRENT_OTHER;
        int t = S_ISREG(st.st_mode) ? MPII_DIRENT_FILE : S_ISDIR(st.st_mode) ? MPII_DIRENT_DIR : MPII_DIRENT_OTHER;
        /* a link to a file or a directory is that, and remembered as a link
         * (`mpiimport run` answers lstat() and readlink() from it) */
        return (mpii_dirent_type)(d->d_type == DT_LNK ? t | MPII_DIRENT_LINK : t);
    }
    default: return MPII_DIRENT_OTHER;
    }
}

mpii_status mpii_ctx_read_listing(mpii_context *ctx, const char *dir)
{
    ctx->stats.fs_calls++;
    DIR *d = opendir(dir);
    if (d == NULL)
        return mpii_ctx_record_miss(ctx, dir, errno == ENOTDIR ? MPII_MISS_NOT_DIR : 0);
    size_t n = 0, cap = 0;
    char **names = NULL;
    mpii_dirent_type *types = NULL;
    mpii_status st = MPII_OK;
    struct dirent *ent;
    errno = 0;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nn = realloc(names, nc * sizeof *nn);
            if (nn == NULL) { st = MPII_ERR_NOMEM; break; }
            names = nn;
            mpii_dirent_type *nt = realloc(types, nc * sizeof *nt);
            if (nt == NULL) { st = MPII_ERR_NOMEM; break; }
            types = nt;
            cap = nc;
        }
        names[n] = strdup(ent->d_name);
        if (names[n] == NULL) { st = MPII_ERR_NOMEM; break; }
        types[n] = classify(dirfd(d), ent, &ctx->stats);
        n++;
        errno = 0;
    }
    if (st == MPII_OK && errno != 0)
        st = MPII_ERR_IO;
    struct stat dsb;
    int64_t mtime = 0;
    if (st == MPII_OK && fstat(dirfd(d), &dsb) == 0)
        mtime = stat_mtime(&dsb);
    if (closedir(d) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    /* (added to the knowledge in place, so counted and sent here, not by
     * mpii_ctx_record) */
    if (st == MPII_OK)
        st = mpii_image_add_listing_at(ctx->known, dir, (const char *const *)names, types, n, mtime);
    if (st == MPII_OK && ctx->frozen)
        ctx->stats.image_misses++;
    if (st == MPII_OK && mpii_ctx_sends(ctx)) {
        const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_LISTING, dir);
        st = e ? mpii_image_add(ctx->outgoing, e) : MPII_ERR_NOTFOUND;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(types);
    return st;
}

mpii_status mpii_ctx_read_file(mpii_context *ctx, const char *path, int want_bytes)
{
    double t0 = mpii_monotonic_s();
    struct stat sb;
    if (!want_bytes) {
        /* a stat is enough (a module source): no open at the metadata server */
        ctx->stats.fs_calls++;
        if (stat(path, &sb) != 0)
            return mpii_ctx_record_miss(ctx, path, errno == ENOTDIR ? MPII_MISS_NOT_DIR | MPII_MISS_UNDER_FILE : 0);
        if (!S_ISREG(sb.st_mode))
            return mpii_ctx_record_miss(ctx, path, 0);
        mpii_entry e = {MPII_ENTRY_FILE, MPII_FILE_STAT_ONLY, path, strlen(path), NULL, 0,
                        stat_mtime(&sb), (uint64_t)sb.st_size};
        ctx->stats.read_s += mpii_monotonic_s() - t0;
        return mpii_ctx_record(ctx, &e);
    }
    ctx->stats.fs_calls++;
    /* O_NONBLOCK: a FIFO (or a device) under a served directory must not
     * block rank 0 in open(); fstat below takes only regular files (their
     * reads ignore O_NONBLOCK) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return mpii_ctx_record_miss(ctx, path, errno == ENOTDIR ? MPII_MISS_NOT_DIR | MPII_MISS_UNDER_FILE : 0);
    ctx->stats.fs_calls++;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int ok = close(fd) == 0;
        (void)ok;
        return mpii_ctx_record_miss(ctx, path, 0);
    }
    size_t cap = (size_t)sb.st_size, len = 0;
    uint8_t *data = malloc(cap ? cap : 1);
    mpii_status st = data != NULL ? MPII_OK : MPII_ERR_NOMEM;
    while (st == MPII_OK) {
        if (len == cap) {
            /* the file grew since fstat: read on */
            uint8_t *nd = realloc(data, cap * 2 + 4096);
            if (nd == NULL) { st = MPII_ERR_NOMEM; break; }
            data = nd;
            cap = cap * 2 + 4096;
        }
        ssize_t r = read(fd, data + len, cap - len);
        ctx->stats.fs_calls++;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) { st = MPII_ERR_IO; break; }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    ctx->stats.fs_calls++;
    if (close(fd) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    if (st == MPII_OK) {
        mpii_entry e = {MPII_ENTRY_FILE, 0, path, strlen(path), data, len, stat_mtime(&sb), (uint64_t)len};
        st = mpii_ctx_record(ctx, &e);
        ctx->stats.read_count++;
        ctx->stats.read_bytes += len;
    }
    free(data);
    ctx->stats.read_s += mpii_monotonic_s() - t0;
    return st;
}

/* ---- module code ---- */

mpii_status mpii_context_source_code(mpii_context *ctx, const uint8_t magic[4],
                                     const char *source_path, const char *pyc_path,
                                     mpii_code_kind *kind, const mpii_entry **source,
                                     const mpii_entry **entry)
{
    if (ctx == NULL || magic == NULL || source_path == NULL || kind == NULL || source == NULL ||
        entry == NULL)
        return MPII_ERR_INVALID;
    const mpii_entry *src = NULL, *pyc = NULL, *code = NULL;
    mpii_status st = mpii_context_file(ctx, source_path, 0, &src);
    if (st != MPII_OK)
        return st;
    if (src == NULL)
        return MPII_ERR_NOTFOUND;
    *source = src;
    /* Code the root compiled for exactly this source wins. */
    code = mpii_image_lookup(ctx->known, MPII_ENTRY_CODE, source_path);
    if (code != NULL && code->mtime_ns == src->mtime_ns && code->size == src->size) {
        *kind = MPII_CODE_COMPILED;
        *entry = code;
        return MPII_OK;
    }
    if (pyc_path != NULL) {
        if ((st = mpii_context_file(ctx, pyc_path, 1, &pyc)) != MPII_OK)
            return st;
        const uint8_t *bytes = NULL;
        size_t len = 0;
        void *owned = NULL;
        if (pyc != NULL && (st = mpii_context_entry_bytes(ctx, pyc, &bytes, &len, &owned)) != MPII_OK)
            return st;
        int valid = pyc != NULL &&
                    mpii_pyc_check(magic, bytes, len, src->mtime_ns, src->size) == MPII_PYC_VALID;
        free(owned);
        if (valid) {
            *kind = MPII_CODE_PYC;
            *entry = pyc;
            return MPII_OK;
        }
    }
    if (mpii_ctx_reads_itself(ctx)) {
        *kind = MPII_CODE_COMPILE_NEEDED;
        *entry = NULL;
        return MPII_OK;
    }
    return mpii_ctx_gap(ctx);
}

mpii_status mpii_context_add_code(mpii_context *ctx, const char *source_path, const void *code,
                                  size_t len, int64_t mtime_ns, uint64_t size)
{
    if (ctx == NULL || source_path == NULL || !mpii_ctx_reads_itself(ctx))
        return MPII_ERR_INVALID;
    mpii_entry e = {MPII_ENTRY_CODE, 0, source_path, strlen(source_path), code, len, mtime_ns, size};
    return mpii_ctx_record(ctx, &e);
}

/* ---- recorded lists and packed images ---- */

mpii_status mpii_context_replay(mpii_context *ctx, const mpii_image *recorded, unsigned flags,
                                uint64_t *reused, uint64_t *reread)
{
    int trust = (flags & MPII_REPLAY_TRUST) != 0;
    int facts_only = (flags & MPII_REPLAY_FACTS_ONLY) != 0;
    if (ctx == NULL || recorded == NULL || ctx->rank != 0)
        return MPII_ERR_INVALID;
    uint64_t n_reused = 0, n_reread = 0;
    mpii_status st = MPII_OK;
    for (size_t i = 0; st == MPII_OK && i < mpii_image_count(recorded); i++) {
        /* MPII_FILE_STAGED is this process's own note (serve.c), never a file's */
        mpii_entry copy = *mpii_image_entry_at(recorded, i);
        copy.flags &= ~MPII_FILE_STAGED;
        const mpii_entry *e = &copy;
        struct stat sb;
        /* a stat-only entry needs no bytes; one whose bytes were left out does
         * (a recorded list's bytes, if it carries any, are never used) */
        int have_bytes = e->kind != MPII_ENTRY_FILE || !(e->flags & MPII_FILE_DATA_OMITTED);
        if (facts_only && e->kind == MPII_ENTRY_FILE && !(e->flags & MPII_FILE_STAT_ONLY))
            have_bytes = 0;
        if (facts_only && e->kind == MPII_ENTRY_CODE)
            continue; /* code comes from the files, compiled by the root */
        if (e->kind == MPII_ENTRY_CODE) {
            /* used only while it matches its source's stat (mpii_context_source_code) */
            st = mpii_ctx_record(ctx, e);
            n_reused++;
            continue;
        }
        int unchanged = 0;
        if (trust) {
            unchanged = 1;
        } else if (e->kind == MPII_ENTRY_MISS) {
            /* still missing; or, a miss as a directory, still not one */
            ctx->stats.fs_calls++;
            int gone = stat(e->path, &sb) != 0;
            unchanged = gone ? (errno == ENOENT || errno == ENOTDIR)
                             : (e->flags & MPII_MISS_NOT_DIR) && !S_ISDIR(sb.st_mode);
        } else if (have_bytes) {
            /* (an entry whose bytes were left out is read again anyway: no stat first) */
            ctx->stats.fs_calls++;
            unchanged = stat(e->path, &sb) == 0 && stat_mtime(&sb) == e->mtime_ns &&
                        (e->kind == MPII_ENTRY_LISTING ? S_ISDIR(sb.st_mode)
                                                        : S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == e->size);
        }
        if (unchanged && (have_bytes || e->kind == MPII_ENTRY_MISS)) {
            st = mpii_ctx_record(ctx, e);
            n_reused++;
            continue;
        }
        n_reread++;
        switch (e->kind) {
        case MPII_ENTRY_LISTING:
            st = mpii_ctx_read_listing(ctx, e->path);
            break;
        case MPII_ENTRY_FILE:
            st = mpii_ctx_read_file(ctx, e->path, !(e->flags & MPII_FILE_STAT_ONLY));
            break;
        default: /* MISS: whatever is there now */
            ctx->stats.fs_calls++;
            if (stat(e->path, &sb) != 0)
                st = mpii_ctx_record_miss(ctx, e->path, e->flags);
            else if (S_ISDIR(sb.st_mode))
                st = mpii_ctx_read_listing(ctx, e->path);
            else if (S_ISREG(sb.st_mode))
                st = mpii_ctx_read_file(ctx, e->path, 1);
            else
                st = mpii_ctx_record_miss(ctx, e->path, 0);
            break;
        }
    }
    if (reused != NULL)
        *reused = n_reused;
    if (reread != NULL)
        *reread = n_reread;
    return st;
}
