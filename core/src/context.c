/* context.c — the context's life and its knowledge: create (the transport,
 * the hello, the stage directory's name) and destroy, the lock, the
 * accessors and counters behind mpiimport.stats(), and the questions asked
 * of the knowledge (a listing, a file, a find), answered from what is known
 * or, for a rank that reads itself, read once through read.c. Forgetting and
 * copying the knowledge live here too. Messages (the hello at create among
 * them) are distribute.c's; extension modules are stage_extension.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context_internal.h"
#include "mpiimport/util.h"

static void set_err(char *err, size_t cap, const char *what, mpii_status st)
{
    if (err != NULL && cap > 0 && snprintf(err, cap, "%s: %s", what, mpii_strerror(st)) < 0)
        err[0] = '\0';
}

/* The application shuts the runtime down before our exit handler: end the
 * session now, while broadcasts and barriers still work. */
static void finish_hook(void *arg)
{
    mpii_status st = mpii_context_finish(arg);
    (void)st; /* nobody to tell: the next finish() call reports OK */
}

mpii_status mpii_context_create(const mpii_config *cfg, const mpii_transport_ops *ops,
                                mpii_context **out, char *err, size_t err_cap)
{
    if (cfg == NULL || ops == NULL || out == NULL)
        return MPII_ERR_INVALID;
    mpii_context *ctx = calloc(1, sizeof *ctx);
    if (ctx != NULL && pthread_mutex_init(&ctx->lock, NULL) != 0) {
        free(ctx);
        ctx = NULL;
    }
    if (ctx == NULL)
        return MPII_ERR_NOMEM;
    ctx->cfg = *cfg;
    ctx->ops = ops;
    ctx->index_watch = -1;
    mpii_status st = mpii_image_create(&ctx->known);
    if (st == MPII_OK)
        st = mpii_image_create(&ctx->outgoing);
    if (st != MPII_OK) {
        mpii_context_destroy(ctx);
        return st;
    }
    mpii_transport_options opt = {.ranks_per_node = cfg->ranks_per_node,
                                  .before_finalize = finish_hook,
                                  .before_finalize_arg = ctx};
    st = ops->init(&opt, &ctx->transport, err, err_cap);
    if (st != MPII_OK) {
        ctx->transport = NULL;
        mpii_context_destroy(ctx);
        return st;
    }
    ctx->rank = ops->rank(ctx->transport);
    ctx->size = ops->size(ctx->transport);
    if ((st = ops->node_info(ctx->transport, &ctx->node)) != MPII_OK) {
        set_err(err, err_cap, "node grouping", st);
        mpii_context_destroy(ctx);
        return st;
    }
    if ((st = mpii_ctx_hello(ctx, &ctx->nonce)) != MPII_OK) {
        set_err(err, err_cap, "hello broadcast", st);
        mpii_context_destroy(ctx);
        return st;
    }
    if ((st = mpii_ctx_name_stage(ctx, ctx->nonce)) != MPII_OK) {
        set_err(err, err_cap, "stage directory", st);
        mpii_context_destroy(ctx);
        return st;
    }
    /* This process uses the node's stage (its last survivor removes it),
     * and one rank per node removes what killed jobs of this user left. A
     * registry that cannot be made only loses that clean-up. */
    ctx->registered = mpii_stage_register(ctx->stage_root) == MPII_OK;
    if (ctx->node.local_rank == 0)
        ctx->stats.swept = mpii_stage_sweep(cfg->stage_dir, "/dev/shm");
    *out = ctx;
    return MPII_OK;
}

/* The root's nonce names this job's stage directory, so a stale directory
 * of an earlier job is never reused. */
mpii_status mpii_ctx_name_stage(mpii_context *ctx, uint64_t nonce)
{
    int n = snprintf(ctx->stage_root, sizeof ctx->stage_root, "%s/mpiimport-%lu-%s-%016llx-n%d",
                     ctx->cfg.stage_dir, (unsigned long)geteuid(), ctx->cfg.job_id,
                     (unsigned long long)nonce, ctx->node.node_id);
    if (n < 0 || (size_t)n >= sizeof ctx->stage_root) {
        ctx->stage_root[0] = '\0';
        return MPII_ERR_TOOLONG;
    }
    return MPII_OK;
}

void mpii_context_destroy(mpii_context *ctx)
{
    if (ctx == NULL)
        return;
    /* A session that never finished (pack, a failed start): this process
     * leaves the node's registry, and the last one out removes it and the
     * stage, instead of leaving them to a later job's sweep. */
    if (ctx->registered) {
        mpii_status st = mpii_context_leave_node(ctx);
        (void)st; /* a leftover is swept by a later job */
    }
    if (ctx->stage != NULL)
        mpii_stage_close(ctx->stage);
    mpii_ctx_index_close(ctx);
    if (ctx->unclean && ctx->ops->finalize_waits_for_peers) {
        /* The end of the session failed: a peer of the node died (finish
         * waits for live ones however long they take) or the transport broke,
         * and this transport's finalize (MPI_Finalize) would wait for the dead
         * for ever: the runtime is left to the end of the process instead. */
        ctx->transport = NULL;
        ctx->sends = NULL; /* and so are buffers it may still read */
        ctx->nsends = 0;
    }
    if (ctx->nsends > 0) {
        /* Sends that never completed (a rank never drained them: it died or
         * hung). Finalising the runtime under pending operations crashes
         * some MPI libraries, so the transport and the buffers it may still
         * read are left to the end of the process. */
        ctx->transport = NULL;
        ctx->sends = NULL;
        ctx->nsends = 0;
    }
    if (ctx->transport != NULL)
        ctx->ops->finalize(ctx->transport);
    free(ctx->sends);
    mpii_image_destroy(ctx->known);
    mpii_image_destroy(ctx->outgoing);
    int rc = pthread_mutex_destroy(&ctx->lock);
    (void)rc;
    free(ctx);
}

void mpii_context_lock(mpii_context *ctx)
{
    int rc = pthread_mutex_lock(&ctx->lock);
    (void)rc; /* a default mutex fails only on misuse (EDEADLK is not detected) */
}

void mpii_context_unlock(mpii_context *ctx)
{
    int rc = pthread_mutex_unlock(&ctx->lock);
    (void)rc;
}

int mpii_context_rank(const mpii_context *ctx) { return ctx->rank; }
int mpii_context_size(const mpii_context *ctx) { return ctx->size; }
const mpii_stats *mpii_context_stats(const mpii_context *ctx) { return &ctx->stats; }
uint64_t mpii_context_known_bytes(const mpii_context *ctx) { return mpii_image_data_bytes(ctx->known); }
mpii_stats *mpii_context_stats_mut(mpii_context *ctx) { return &ctx->stats; }
const char *mpii_context_stage_root(const mpii_context *ctx) { return ctx->stage_root; }
int mpii_context_stage_errno(const mpii_context *ctx) { return ctx->stage_errno; }

mpii_status mpii_context_use_staged(mpii_context *ctx, const char *root, const mpii_image *index)
{
    if (ctx == NULL || root == NULL || index == NULL || ctx->size != 1)
        return MPII_ERR_INVALID;
    size_t n = strlen(root);
    if (n >= sizeof ctx->stage_root)
        return MPII_ERR_TOOLONG;
    mpii_status st = mpii_image_merge(ctx->known, index);
    if (st != MPII_OK)
        return st;
    /* This process does not use a job stage: it leaves the registry it
     * joined at create (its own, never made into a stage). */
    if (ctx->registered) {
        int last = 0;
        ctx->registered = 0;
        if (mpii_stage_leave(ctx->stage_root, &last) == MPII_OK && last) {
            st = mpii_stage_discard(ctx->stage_root);
            (void)st; /* a leftover registry is swept later */
        }
    }
    memcpy(ctx->stage_root, root, n + 1);
    ctx->persistent_stage = 1;
    ctx->frozen = 1;
    return MPII_OK;
}

/* ---- knowledge ---- */

mpii_status mpii_ctx_record(mpii_context *ctx, const mpii_entry *e)
{
    mpii_status st = mpii_image_add(ctx->known, e);
    if (st == MPII_OK && mpii_ctx_sends(ctx))
        st = mpii_image_add(ctx->outgoing, e);
    if (st == MPII_OK && ctx->frozen)
        ctx->stats.image_misses++;  /* a fact the replayed image lacked */
    return st;
}

mpii_status mpii_ctx_record_miss(mpii_context *ctx, const char *path, uint32_t flags)
{
    mpii_entry e = {MPII_ENTRY_MISS, flags, path, strlen(path), NULL, 0, 0, 0};
    return mpii_ctx_record(ctx, &e);
}

/* The fact known for path: its entry of this kind (a FILE: with its bytes
 * when want_bytes) in *entry, or its MISS (*entry NULL, its flags in
 * *miss_flags if not NULL). 1, or 0 when neither is known. */
static int known_fact(const mpii_context *ctx, mpii_entry_kind kind, const char *path,
                      int want_bytes, const mpii_entry **entry, unsigned *miss_flags)
{
    const mpii_entry *e = mpii_image_lookup(ctx->known, kind, path);
    if (e != NULL && (!want_bytes || !(e->flags & MPII_FILE_STAT_ONLY))) {
        *entry = e;
        return 1;
    }
    const mpii_entry *m = e == NULL ? mpii_image_lookup(ctx->known, MPII_ENTRY_MISS, path) : NULL;
    /* "exists but is not a directory" answers a listing, never a file; "a
     * component is not a directory" (a file read's ENOTDIR) answers both */
    if (m == NULL || (kind == MPII_ENTRY_FILE && (m->flags & MPII_MISS_NOT_DIR) &&
                      !(m->flags & MPII_MISS_UNDER_FILE)))
        return 0;
    *entry = NULL;
    if (miss_flags != NULL)
        *miss_flags = m->flags;
    return 1;
}

/* A question (a LISTING or a FILE): answered from the knowledge; else read
 * once by a rank that reads itself and answered from what it read; else a
 * gap. */
static mpii_status ask(mpii_context *ctx, mpii_entry_kind kind, const char *path, int want_bytes,
                       const mpii_entry **entry, unsigned *miss_flags)
{
    if (known_fact(ctx, kind, path, want_bytes, entry, miss_flags)) {
        ctx->stats.fs_calls_saved++;
        return MPII_OK;
    }
    if (!mpii_ctx_reads_itself(ctx))
        return mpii_ctx_gap(ctx);
    mpii_status st = kind == MPII_ENTRY_LISTING ? mpii_ctx_read_listing(ctx, path)
                                                : mpii_ctx_read_file(ctx, path, want_bytes);
    if (st != MPII_OK)
        return st;
    return known_fact(ctx, kind, path, want_bytes, entry, miss_flags) ? MPII_OK : mpii_ctx_gap(ctx);
}

mpii_status mpii_context_listing(mpii_context *ctx, const char *dir, const mpii_entry **entry,
                                 unsigned *miss_flags)
{
    if (ctx == NULL || dir == NULL || entry == NULL || dir[0] != '/')
        return MPII_ERR_INVALID;
    return ask(ctx, MPII_ENTRY_LISTING, dir, 0, entry, miss_flags);
}

mpii_status mpii_context_file(mpii_context *ctx, const char *path, int want_bytes,
                              const mpii_entry **entry)
{
    if (ctx == NULL || path == NULL || entry == NULL || path[0] != '/')
        return MPII_ERR_INVALID;
    return ask(ctx, MPII_ENTRY_FILE, path, want_bytes, entry, NULL);
}

const mpii_entry *mpii_context_lookup(mpii_context *ctx, const char *path)
{
    if (ctx == NULL || path == NULL)
        return NULL;
    const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_FILE, path);
    if (e == NULL || (e->flags & MPII_FILE_STAT_ONLY))
        return NULL;
    ctx->stats.fs_calls_saved++;
    return e;
}

mpii_status mpii_context_find(mpii_context *ctx, const mpii_suffix_table *suffixes,
                              const char *dir, const char *name, mpii_find_result *result)
{
    double t0 = mpii_monotonic_s();
    mpii_status st = mpii_find_in_dir(suffixes, (mpii_listing_fn)mpii_context_listing, ctx, dir,
                                      name, result);
    ctx->stats.find_s += mpii_monotonic_s() - t0;
    if (st == MPII_OK)
        ctx->stats.find_count++;
    return st;
}

void mpii_context_forget(mpii_context *ctx, const char *path)
{
    if (ctx == NULL || path == NULL)
        return;
    static const mpii_entry_kind kinds[] = {MPII_ENTRY_FILE, MPII_ENTRY_MISS, MPII_ENTRY_CODE};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        mpii_image_remove(ctx->known, kinds[i], path);
        mpii_image_remove(ctx->outgoing, kinds[i], path);
    }
}

void mpii_context_invalidate(mpii_context *ctx)
{
    if (ctx == NULL)
        return;
    /* Whatever was not yet sent is dropped with the rest: the root re-reads. */
    if (ctx->rank == 0)
        mpii_image_clear(ctx->outgoing);
    mpii_image_clear(ctx->known);
}

/* ---- copies of the knowledge (recorded lists, packed images) ---- */

size_t mpii_context_source_count(const mpii_context *ctx, const char ***paths)
{
    size_t n = 0, total = mpii_image_count(ctx->known);
    const char **out = malloc((total ? total : 1) * sizeof *out);
    if (out == NULL) {
        *paths = NULL;
        return 0;
    }
    for (size_t i = 0; i < total; i++) {
        const mpii_entry *e = mpii_image_entry_at(ctx->known, i);
        if (e->kind == MPII_ENTRY_FILE && (e->flags & MPII_FILE_STAT_ONLY))
            out[n++] = e->path;
    }
    *paths = out;
    return n;
}

mpii_status mpii_context_snapshot(mpii_context *ctx, int with_data, mpii_image **out)
{
    if (ctx == NULL || out == NULL)
        return MPII_ERR_INVALID;
    mpii_image *img = NULL; /* (a failed create leaves it unset) */
    mpii_status st = mpii_image_create(&img);
    for (size_t i = 0; st == MPII_OK && i < mpii_image_count(ctx->known); i++) {
        mpii_entry e = *mpii_image_entry_at(ctx->known, i);
        if (!with_data && e.kind == MPII_ENTRY_CODE)
            continue; /* compiled again on replay when still needed */
        if (!with_data && e.kind == MPII_ENTRY_FILE && !(e.flags & MPII_FILE_STAT_ONLY)) {
            e.flags |= MPII_FILE_DATA_OMITTED;
            e.data = NULL;
            e.data_len = 0;
        }
        st = mpii_image_add(img, &e);
    }
    if (st != MPII_OK) {
        mpii_image_destroy(img);
        return st;
    }
    *out = img;
    return MPII_OK;
}
