/* stage_extension.c — the STAGE stage for extension modules: an extension
 * module is loaded by the dynamic linker from a node-local copy, so it and
 * the bundled libraries it reaches through $ORIGIN (elf.c) are made known
 * with their bytes (a walk through the knowledge, so a gap on other ranks
 * until the root's message arrived), then written under this node's stage
 * directory at their original layout through stage.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "context_internal.h"
#include "mpiimport/elf.h"

#define DEPS_MAX 64

/* The module and the libraries it reaches through $ORIGIN, in discovery
 * order (module first). Every question goes through the knowledge, so on
 * other ranks this answers MPII_ERR_GAP until the root's message arrived. */
struct dep_list {
    size_t count;
    char path[DEPS_MAX][MPII_PATH_MAX];
};

static int dep_seen(const struct dep_list *deps, const char *path)
{
    for (size_t i = 0; i < deps->count; i++)
        if (strcmp(deps->path[i], path) == 0)
            return 1;
    return 0;
}

static mpii_status collect_deps(mpii_context *ctx, const char *path, struct dep_list *deps)
{
    int n = snprintf(deps->path[0], MPII_PATH_MAX, "%s", path);
    if (n < 0 || n >= MPII_PATH_MAX)
        return MPII_ERR_TOOLONG;
    deps->count = 1;
    for (size_t i = 0; i < deps->count; i++) {
        const mpii_entry *e = NULL;
        mpii_status st = mpii_context_file(ctx, deps->path[i], 1, &e);
        if (st != MPII_OK)
            return st;
        if (e == NULL)
            return i == 0 ? MPII_ERR_NOTFOUND : MPII_OK; /* a vanished library: ld.so will say */
        char dir[MPII_PATH_MAX];
        memcpy(dir, deps->path[i], sizeof dir); /* (arrays of the same size) */
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            continue;
        *(slash == dir ? slash + 1 : slash) = '\0';
        mpii_elf_deps elf;
        const uint8_t *bytes = NULL;
        size_t len = 0;
        void *owned = NULL;
        if ((st = mpii_context_entry_bytes(ctx, e, &bytes, &len, &owned)) != MPII_OK)
            return st;
        mpii_status elf_st = mpii_elf_deps_read(bytes, len, dir, &elf);
        free(owned);
        if (elf_st != MPII_OK)
            continue; /* not ELF, or not one we can read: nothing bundled to follow */
        for (size_t d = 0; d < elf.origin_dir_count && st == MPII_OK; d++) {
            for (size_t k = 0; k < elf.needed_count && st == MPII_OK; k++) {
                const mpii_entry *listing = NULL;
                st = mpii_context_listing(ctx, elf.origin_dirs[d], &listing, NULL);
                if (st != MPII_OK || listing == NULL)
                    break;
                if (strchr(elf.needed[k], '/') != NULL ||
                    mpii_listing_find(listing, elf.needed[k]) != MPII_DIRENT_FILE)
                    continue;
                char lib[MPII_PATH_MAX];
                if (mpii_path_join(lib, sizeof lib, elf.origin_dirs[d], elf.needed[k]) != MPII_OK ||
                    dep_seen(deps, lib))
                    continue;
                if (deps->count == DEPS_MAX) {
                    st = MPII_ERR_TOOLONG;
                    break;
                }
                memcpy(deps->path[deps->count++], lib, sizeof lib);
            }
        }
        mpii_elf_deps_free(&elf);
        if (st != MPII_OK)
            return st;
    }
    return MPII_OK;
}

mpii_status mpii_context_extension(mpii_context *ctx, const char *path)
{
    if (ctx == NULL || path == NULL || path[0] != '/')
        return MPII_ERR_INVALID;
    struct dep_list *deps = malloc(sizeof *deps);
    if (deps == NULL)
        return MPII_ERR_NOMEM;
    mpii_status st = collect_deps(ctx, path, deps);
    free(deps);
    return st;
}

/* ---- staging ---- */

static mpii_status stage_one(mpii_context *ctx, const char *path, char *staged, size_t staged_cap)
{
    const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_FILE, path);
    if (e == NULL || (e->flags & MPII_FILE_STAT_ONLY))
        return MPII_ERR_NOTFOUND;
    if (e->flags & MPII_FILE_STAGED) {
        /* staged when it arrived (serve.c), checked then */
        struct stat sb;
        int n = snprintf(staged, staged_cap, "%s%s", ctx->stage_root, path);
        if (n < 0 || (size_t)n >= staged_cap)
            return MPII_ERR_TOOLONG;
        if (lstat(staged, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size)
            return MPII_ERR_CORRUPT;
        return MPII_OK;
    }
    if (ctx->stage == NULL)
        return MPII_ERR_NOTFOUND; /* not in a staged image's stage: the caller imports it plainly */
    /* Count what this rank wrote: the file exists afterwards either way. */
    struct stat before;
    char probe[MPII_PATH_MAX];
    int n = snprintf(probe, sizeof probe, "%s%s", ctx->stage_root, path);
    int existed = n > 0 && (size_t)n < sizeof probe && lstat(probe, &before) == 0;
    mpii_status st = mpii_stage_file(ctx->stage, path, e->data, e->data_len, ctx->cfg.timeout_s,
                                     staged, staged_cap);
    if (st == MPII_OK && !existed) {
        ctx->stats.staged_files++;
        ctx->stats.staged_bytes += e->data_len;
    }
    return st;
}

mpii_status mpii_context_stage(mpii_context *ctx, const char *path, char *staged, size_t staged_cap)
{
    if (ctx == NULL || path == NULL || staged == NULL)
        return MPII_ERR_INVALID;
    mpii_status st;
    ctx->stage_errno = 0;
    /* a staged image's stage holds its files already, and is never written
     * by a job (other jobs use it); its root is a held one (/proc/self/fd) */
    if (!ctx->persistent_stage && (st = mpii_ctx_open_stage(ctx)) != MPII_OK)
        return st;
    struct dep_list *deps = malloc(sizeof *deps);
    if (deps == NULL)
        return MPII_ERR_NOMEM;
    st = collect_deps(ctx, path, deps); /* all known by now: no gap, no read */
    /* Libraries first, so the module never sits in the stage without them. */
    char scratch[MPII_PATH_MAX];
    for (size_t i = deps->count; st == MPII_OK && i > 1; i--)
        st = stage_one(ctx, deps->path[i - 1], scratch, sizeof scratch);
    if (st == MPII_OK)
        st = stage_one(ctx, path, staged, staged_cap);
    free(deps);
    return st;
}
