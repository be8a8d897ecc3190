/* context.c — the one context struct and the import protocol over a transport:
 * knowledge (what the root has sent), the root's file-system reads, messages
 * out (flush) and in (receive), the end-of-session drain, staging of
 * extension modules, and the counters behind mpiimport.stats(). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/context.h"
#include "mpiimport/elf.h"
#include "mpiimport/pyc.h"
#include "mpiimport/stage.h"

#define HELLO_MAGIC "MPIIHELO"
#define END_MAGIC "MPIIEND!"
#define CTRL_SIZE 16

struct pending_send {
    mpii_bcast_req *req;
    uint8_t *buf;
};

struct mpii_context {
    pthread_mutex_t lock;  /* knowledge, outgoing and stats: see mpii_context_lock() */
    mpii_config cfg;
    const mpii_transport_ops *ops;
    mpii_transport *transport;
    int rank, size;
    mpii_node_info node;
    uint64_t nonce;
    mpii_image *known;     /* every fact the root has sent (root: has added) */
    mpii_image *outgoing;  /* root: facts added since the last flush */
    uint64_t seq_sent, seq_received;
    mpii_bcast_req *receiving; /* non-root: the pending receive, if any */
    struct pending_send *sends;
    size_t nsends, sends_cap;
    int ended;      /* non-root: the end marker arrived */
    int unclean;    /* finish failed: a peer may be gone */
    int frozen;     /* no more messages either way */
    int finished;
    char stage_root[MPII_PATH_MAX];
    mpii_stage *stage;
    int stage_errno; /* why the stage directory could not be made (0: it could, or other cause) */
    int registered;  /* this process is in the stage's registry (stage_registry.c) */
    mpii_stats stats;
};

static double now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t make_nonce(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, &v, sizeof v);
        if (close(fd) != 0 || n != (ssize_t)sizeof v)
            v = 0;
    }
    if (v == 0) {
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
            v = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)ts.tv_sec;
        v ^= (uint64_t)getpid() << 32;
    }
    return v;
}

static void set_err(char *err, size_t cap, const char *what, mpii_status st)
{
    if (err != NULL && cap > 0 && snprintf(err, cap, "%s: %s", what, mpii_strerror(st)) < 0)
        err[0] = '\0';
}

/* A blocking broadcast with the configured timeout, for the control messages. */
static mpii_status bcast_ctrl(mpii_context *ctx, uint8_t msg[CTRL_SIZE])
{
    mpii_bcast_req *req = NULL;
    mpii_status st = ctx->ops->bcast_start(ctx->transport, 0, msg, CTRL_SIZE, &req);
    if (st != MPII_OK)
        return st;
    void *buf = NULL;
    size_t len = 0;
    st = ctx->ops->bcast_wait(ctx->transport, req, ctx->cfg.timeout_s, &buf, &len);
    if (st != MPII_OK)
        return st;
    if (ctx->rank != 0) {
        if (len != CTRL_SIZE) {
            free(buf);
            return MPII_ERR_CORRUPT;
        }
        memcpy(msg, buf, CTRL_SIZE);
        free(buf);
    }
    return MPII_OK;
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
    /* The hello: the root's nonce names this job's stage directory, so a
     * stale directory of an earlier job is never reused. */
    uint8_t hello[CTRL_SIZE];
    memcpy(hello, HELLO_MAGIC, 8);
    put_u64(hello + 8, make_nonce());
    if (ctx->size > 1 && (st = bcast_ctrl(ctx, hello)) != MPII_OK) {
        set_err(err, err_cap, "hello broadcast", st);
        mpii_context_destroy(ctx);
        return st;
    }
    if (memcmp(hello, HELLO_MAGIC, 8) != 0) {
        set_err(err, err_cap, "hello broadcast", MPII_ERR_CORRUPT);
        mpii_context_destroy(ctx);
        return MPII_ERR_CORRUPT;
    }
    ctx->nonce = get_u64(hello + 8);
    int n = snprintf(ctx->stage_root, sizeof ctx->stage_root, "%s/mpiimport-%lu-%s-%016llx-n%d",
                     cfg->stage_dir, (unsigned long)geteuid(), cfg->job_id,
                     (unsigned long long)ctx->nonce, ctx->node.node_id);
    if (n < 0 || (size_t)n >= sizeof ctx->stage_root) {
        set_err(err, err_cap, "stage directory", MPII_ERR_TOOLONG);
        mpii_context_destroy(ctx);
        return MPII_ERR_TOOLONG;
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
mpii_stats *mpii_context_stats_mut(mpii_context *ctx) { return &ctx->stats; }
const char *mpii_context_stage_root(const mpii_context *ctx) { return ctx->stage_root; }
int mpii_context_stage_errno(const mpii_context *ctx) { return ctx->stage_errno; }

/* ---- knowledge ---- */

/* Who reads an unknown fact from the file system: the root, and, once the
 * session is frozen (a replayed image), every rank for its own gaps: one
 * opendir or one file for a fact the image lacks, never a whole plain
 * import. All ranks take the same decision, so none knows more than its
 * questions needed. */
static int reads_itself(const mpii_context *ctx) { return ctx->rank == 0 || ctx->frozen; }

/* Facts read go to the outgoing message only while there are messages. */
static int sends(const mpii_context *ctx) { return ctx->rank == 0 && !ctx->frozen && ctx->size > 1; }

static mpii_status record(mpii_context *ctx, const mpii_entry *e)
{
    mpii_status st = mpii_image_add(ctx->known, e);
    if (st == MPII_OK && sends(ctx))
        st = mpii_image_add(ctx->outgoing, e);
    if (st == MPII_OK && ctx->frozen)
        ctx->stats.image_misses++;  /* a fact the replayed image lacked */
    return st;
}

static mpii_status record_miss(mpii_context *ctx, const char *path, uint32_t flags)
{
    mpii_entry e = {MPII_ENTRY_MISS, flags, path, strlen(path), NULL, 0, 0, 0};
    return record(ctx, &e);
}

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
        return S_ISREG(st.st_mode) ? MPII_DIRENT_FILE : S_ISDIR(st.st_mode) ? MPII_DIRENT_DIR : MPII_DIRENT_OTHER;
    }
    default: return MPII_DIRENT_OTHER;
    }
}

/* Root: reads a directory into a LISTING (or MISS) fact. */
static mpii_status fetch_listing(mpii_context *ctx, const char *dir)
{
    ctx->stats.fs_calls++;
    DIR *d = opendir(dir);
    if (d == NULL)
        return record_miss(ctx, dir, errno == ENOTDIR ? MPII_MISS_NOT_DIR : 0);
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
        mtime = (int64_t)dsb.st_mtim.tv_sec * 1000000000LL + dsb.st_mtim.tv_nsec;
    if (closedir(d) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    if (st == MPII_OK)
        st = mpii_image_add_listing_at(ctx->known, dir, (const char *const *)names, types, n, mtime);
    if (st == MPII_OK && ctx->frozen)
        ctx->stats.image_misses++;
    if (st == MPII_OK && sends(ctx)) {
        const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_LISTING, dir);
        st = e ? mpii_image_add(ctx->outgoing, e) : MPII_ERR_NOTFOUND;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(types);
    return st;
}

mpii_status mpii_context_listing(mpii_context *ctx, const char *dir, const mpii_entry **entry,
                                 unsigned *miss_flags)
{
    if (ctx == NULL || dir == NULL || entry == NULL || dir[0] != '/')
        return MPII_ERR_INVALID;
    for (int attempt = 0; attempt < 2; attempt++) {
        const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_LISTING, dir);
        if (e != NULL) {
            *entry = e;
            if (attempt == 0)
                ctx->stats.fs_calls_saved++;
            return MPII_OK;
        }
        const mpii_entry *m = mpii_image_lookup(ctx->known, MPII_ENTRY_MISS, dir);
        if (m != NULL) {
            *entry = NULL;
            if (miss_flags != NULL)
                *miss_flags = m->flags;
            if (attempt == 0)
                ctx->stats.fs_calls_saved++;
            return MPII_OK;
        }
        if (!reads_itself(ctx) || attempt > 0) {
            ctx->stats.gaps++;
            return MPII_ERR_GAP;
        }
        mpii_status st = fetch_listing(ctx, dir);
        if (st != MPII_OK)
            return st;
    }
    return MPII_ERR_GAP;
}

/* Root: reads a file (or only its stat) into a FILE (or MISS) fact. */
static mpii_status fetch_file(mpii_context *ctx, const char *path, int want_bytes)
{
    double t0 = now_s();
    if (!want_bytes) {
        /* a stat is enough (a module source): no open at the metadata server */
        struct stat sb;
        ctx->stats.fs_calls++;
        if (stat(path, &sb) != 0)
            return record_miss(ctx, path, errno == ENOTDIR ? MPII_MISS_NOT_DIR : 0);
        if (!S_ISREG(sb.st_mode))
            return record_miss(ctx, path, 0);
        mpii_entry e = {MPII_ENTRY_FILE, MPII_FILE_STAT_ONLY, path, strlen(path), NULL, 0,
                        (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec,
                        (uint64_t)sb.st_size};
        ctx->stats.read_s += now_s() - t0;
        return record(ctx, &e);
    }
    ctx->stats.fs_calls++;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return record_miss(ctx, path, errno == ENOTDIR ? MPII_MISS_NOT_DIR : 0);
    struct stat sb;
    ctx->stats.fs_calls++;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int ok = close(fd) == 0;
        (void)ok;
        return record_miss(ctx, path, 0);
    }
    uint8_t *data = NULL;
    size_t len = 0;
    mpii_status st = MPII_OK;
    if (want_bytes) {
        size_t cap = (size_t)sb.st_size;
        data = malloc(cap ? cap : 1);
        if (data == NULL)
            st = MPII_ERR_NOMEM;
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
    }
    ctx->stats.fs_calls++;
    if (close(fd) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    if (st == MPII_OK) {
        int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        mpii_entry e = {MPII_ENTRY_FILE, want_bytes ? 0u : MPII_FILE_STAT_ONLY, path, strlen(path),
                        data, len, mtime, want_bytes ? (uint64_t)len : (uint64_t)sb.st_size};
        st = record(ctx, &e);
        ctx->stats.read_count++;
        ctx->stats.read_bytes += len;
    }
    free(data);
    ctx->stats.read_s += now_s() - t0;
    return st;
}

mpii_status mpii_context_file(mpii_context *ctx, const char *path, int want_bytes,
                              const mpii_entry **entry)
{
    if (ctx == NULL || path == NULL || entry == NULL || path[0] != '/')
        return MPII_ERR_INVALID;
    for (int attempt = 0; attempt < 2; attempt++) {
        const mpii_entry *e = mpii_image_lookup(ctx->known, MPII_ENTRY_FILE, path);
        if (e != NULL && (!want_bytes || !(e->flags & MPII_FILE_STAT_ONLY))) {
            *entry = e;
            if (attempt == 0)
                ctx->stats.fs_calls_saved++;
            return MPII_OK;
        }
        if (e == NULL && mpii_image_lookup(ctx->known, MPII_ENTRY_MISS, path) != NULL) {
            *entry = NULL;
            if (attempt == 0)
                ctx->stats.fs_calls_saved++;
            return MPII_OK;
        }
        if (!reads_itself(ctx) || attempt > 0) {
            ctx->stats.gaps++;
            return MPII_ERR_GAP;
        }
        mpii_status st = fetch_file(ctx, path, want_bytes);
        if (st != MPII_OK)
            return st;
    }
    return MPII_ERR_GAP;
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

mpii_status mpii_context_code(mpii_context *ctx, const char *source_path, const mpii_entry **entry)
{
    if (ctx == NULL || source_path == NULL || entry == NULL)
        return MPII_ERR_INVALID;
    *entry = mpii_image_lookup(ctx->known, MPII_ENTRY_CODE, source_path);
    if (*entry == NULL && !reads_itself(ctx)) {
        ctx->stats.gaps++;
        return MPII_ERR_GAP;
    }
    return MPII_OK;
}

mpii_status mpii_context_add_code(mpii_context *ctx, const char *source_path, const void *code,
                                  size_t len, int64_t mtime_ns, uint64_t size)
{
    if (ctx == NULL || source_path == NULL || !reads_itself(ctx))
        return MPII_ERR_INVALID;
    mpii_entry e = {MPII_ENTRY_CODE, 0, source_path, strlen(source_path), code, len, mtime_ns, size};
    return record(ctx, &e);
}

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
        if (pyc != NULL &&
            mpii_pyc_check(magic, pyc->data, pyc->data_len, src->mtime_ns, src->size) == MPII_PYC_VALID) {
            *kind = MPII_CODE_PYC;
            *entry = pyc;
            return MPII_OK;
        }
    }
    if (reads_itself(ctx)) {
        *kind = MPII_CODE_COMPILE_NEEDED;
        *entry = NULL;
        return MPII_OK;
    }
    ctx->stats.gaps++;
    return MPII_ERR_GAP;
}

mpii_status mpii_context_find(mpii_context *ctx, const mpii_suffix_table *suffixes,
                              const char *dir, const char *name, mpii_find_result *result)
{
    double t0 = now_s();
    mpii_status st = mpii_find_in_dir(suffixes, (mpii_listing_fn)mpii_context_listing, ctx, dir,
                                      name, result);
    ctx->stats.find_s += now_s() - t0;
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

/* ---- messages ---- */

/* Root: completes the sends whose receivers have all arrived. timeout_s
 * bounds the whole call (not each send: hundreds of sends stuck behind a dead
 * rank would otherwise take hundreds of timeouts); < 0 waits for ever. */
static mpii_status progress_sends(mpii_context *ctx, double timeout_s)
{
    size_t kept = 0;
    mpii_status result = MPII_OK;
    double deadline = now_s() + (timeout_s > 0 ? timeout_s : 0.0);
    for (size_t i = 0; i < ctx->nsends; i++) {
        void *unused = NULL;
        size_t ulen = 0;
        double left = timeout_s;
        if (timeout_s > 0) {
            left = deadline - now_s();
            if (left < 0.0)
                left = 0.0; /* out of time: only collect what is already done */
        }
        mpii_status st = ctx->ops->bcast_wait(ctx->transport, ctx->sends[i].req, left, &unused, &ulen);
        if (st == MPII_OK) {
            free(ctx->sends[i].buf);
            continue;
        }
        if (st != MPII_ERR_TIMEOUT && result == MPII_OK)
            result = st;
        if (st == MPII_ERR_TIMEOUT && result == MPII_OK && timeout_s != 0)
            result = st;
        ctx->sends[kept++] = ctx->sends[i];
    }
    ctx->nsends = kept;
    return result;
}

static mpii_status start_send(mpii_context *ctx, uint8_t *buf, size_t len)
{
    if (ctx->nsends == ctx->sends_cap) {
        size_t nc = ctx->sends_cap ? ctx->sends_cap * 2 : 8;
        struct pending_send *ns = realloc(ctx->sends, nc * sizeof *ns);
        if (ns == NULL) {
            free(buf);
            return MPII_ERR_NOMEM;
        }
        ctx->sends = ns;
        ctx->sends_cap = nc;
    }
    double t0 = now_s();
    mpii_bcast_req *req = NULL;
    mpii_status st = ctx->ops->bcast_start(ctx->transport, 0, buf, len, &req);
    if (st != MPII_OK) {
        free(buf);
        return st;
    }
    ctx->sends[ctx->nsends++] = (struct pending_send){req, buf};
    ctx->stats.bcast_count++;
    ctx->stats.bcast_bytes += len;
    st = progress_sends(ctx, 0);
    ctx->stats.bcast_s += now_s() - t0;
    return st == MPII_ERR_TIMEOUT ? MPII_OK : st;
}

static mpii_status flush(mpii_context *ctx, const char *label, int always)
{
    if (ctx == NULL)
        return MPII_ERR_INVALID;
    if (ctx->rank == 0 && ctx->frozen) {
        mpii_image_clear(ctx->outgoing);
        return MPII_OK;
    }
    if (ctx->rank != 0 || ctx->size == 1 || (!always && mpii_image_count(ctx->outgoing) == 0))
        return MPII_OK;
    if (ctx->finished)
        return MPII_ERR_ENDED;
    uint8_t *buf = NULL;
    size_t len = 0;
    mpii_status st = mpii_image_serialize(ctx->outgoing, ctx->seq_sent + 1, label, &buf, &len);
    if (st != MPII_OK)
        return st;
    mpii_image_clear(ctx->outgoing);
    ctx->seq_sent++;
    return start_send(ctx, buf, len);
}

mpii_status mpii_context_flush(mpii_context *ctx, const char *label) { return flush(ctx, label, 0); }

mpii_status mpii_context_flush_always(mpii_context *ctx, const char *label)
{
    return flush(ctx, label, 1);
}

void mpii_context_freeze(mpii_context *ctx)
{
    if (ctx != NULL)
        ctx->frozen = 1;
}

int mpii_context_frozen(const mpii_context *ctx) { return ctx != NULL && ctx->frozen; }

/* ---- recorded lists and packed images ---- */

static int64_t stat_mtime(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

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
        const mpii_entry *e = mpii_image_entry_at(recorded, i);
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
            st = record(ctx, e);
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
            st = record(ctx, e);
            n_reused++;
            continue;
        }
        n_reread++;
        switch (e->kind) {
        case MPII_ENTRY_LISTING:
            st = fetch_listing(ctx, e->path);
            break;
        case MPII_ENTRY_FILE:
            st = fetch_file(ctx, e->path, !(e->flags & MPII_FILE_STAT_ONLY));
            break;
        default: /* MISS: whatever is there now */
            ctx->stats.fs_calls++;
            if (stat(e->path, &sb) != 0)
                st = record_miss(ctx, e->path, e->flags);
            else if (S_ISDIR(sb.st_mode))
                st = fetch_listing(ctx, e->path);
            else if (S_ISREG(sb.st_mode))
                st = fetch_file(ctx, e->path, 1);
            else
                st = record_miss(ctx, e->path, 0);
            break;
        }
    }
    if (reused != NULL)
        *reused = n_reused;
    if (reread != NULL)
        *reread = n_reread;
    return st;
}

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
    mpii_image *img;
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

mpii_status mpii_context_receive(mpii_context *ctx, double timeout_s, char *label, size_t label_cap)
{
    if (ctx == NULL || ctx->rank == 0)
        return MPII_ERR_INVALID;
    if (label != NULL && label_cap > 0)
        label[0] = '\0';
    if (ctx->ended || ctx->frozen)
        return MPII_ERR_ENDED;
    double t0 = now_s();
    mpii_status st;
    if (ctx->receiving == NULL &&
        (st = ctx->ops->bcast_start(ctx->transport, 0, NULL, 0, &ctx->receiving)) != MPII_OK) {
        ctx->receiving = NULL;
        return st;
    }
    void *buf = NULL;
    size_t len = 0;
    st = ctx->ops->bcast_wait(ctx->transport, ctx->receiving, timeout_s, &buf, &len);
    ctx->stats.bcast_s += now_s() - t0;
    if (st == MPII_ERR_TIMEOUT)
        return st;
    ctx->receiving = NULL;
    if (st != MPII_OK)
        return st;
    ctx->stats.bcast_count++;
    ctx->stats.bcast_bytes += len;
    if (len == CTRL_SIZE && memcmp(buf, END_MAGIC, 8) == 0) {
        ctx->ended = 1;
        free(buf);
        return MPII_ERR_ENDED;
    }
    mpii_image *msg = NULL;
    uint64_t seq = 0;
    st = mpii_image_parse(buf, len, &msg, &seq, label, label_cap);
    free(buf);
    if (st != MPII_OK)
        return st;
    if (seq != ctx->seq_received + 1) {
        mpii_image_destroy(msg);
        return MPII_ERR_CORRUPT;
    }
    ctx->seq_received = seq;
    /* The wait above ran unlocked (a reader in another thread goes on); the
     * merge moves entries, so it holds the lock readers hold. */
    mpii_context_lock(ctx);
    st = mpii_image_merge(ctx->known, msg);
    mpii_context_unlock(ctx);
    mpii_image_destroy(msg);
    return st;
}

/* ---- extension modules and their bundled libraries ---- */

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
        snprintf(dir, sizeof dir, "%s", deps->path[i]);
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            continue;
        *(slash == dir ? slash + 1 : slash) = '\0';
        mpii_elf_deps elf;
        if (mpii_elf_deps_read(e->data, e->data_len, dir, &elf) != MPII_OK)
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
    if (ctx->stage == NULL && (st = mpii_stage_open(ctx->stage_root, &ctx->stage)) != MPII_OK) {
        ctx->stage_errno = st == MPII_ERR_UNSAFE ? 0 : errno;
        ctx->stage = NULL;
        return st;
    }
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

/* ---- end of session ---- */

mpii_status mpii_context_leave_node(mpii_context *ctx)
{
    if (ctx == NULL)
        return MPII_ERR_INVALID;
    if (!ctx->registered)
        return MPII_OK;
    ctx->registered = 0;
    int last = 0;
    mpii_status st = mpii_stage_leave(ctx->stage_root, &last);
    if (st == MPII_OK && last) {
        if (ctx->stage != NULL) {
            mpii_stage_close(ctx->stage);
            ctx->stage = NULL;
        }
        st = mpii_stage_discard(ctx->stage_root);
    }
    return st;
}

mpii_status mpii_context_finish(mpii_context *ctx)
{
    if (ctx == NULL)
        return MPII_ERR_INVALID;
    if (ctx->finished || ctx->transport == NULL)
        return MPII_OK;
    ctx->finished = 1;
    mpii_status result = MPII_OK, st;
    double timeout = ctx->cfg.timeout_s;
    if (ctx->size > 1 && !ctx->frozen) {
        if (ctx->rank == 0) {
            ctx->finished = 0;
            st = mpii_context_flush(ctx, "(final)");
            ctx->finished = 1;
            uint8_t *end = malloc(CTRL_SIZE);
            if (end == NULL)
                return MPII_ERR_NOMEM;
            memcpy(end, END_MAGIC, 8);
            put_u64(end + 8, ctx->seq_sent);
            if (st == MPII_OK)
                st = start_send(ctx, end, CTRL_SIZE);
            else
                free(end);
            if (st == MPII_OK)
                st = progress_sends(ctx, timeout);
            result = st;
        } else {
            /* Drain every message the root sent, up to its end marker. */
            while ((st = mpii_context_receive(ctx, timeout, NULL, 0)) == MPII_OK)
                ;
            if (st != MPII_ERR_ENDED)
                result = st;
        }
    } else if (ctx->size > 1 && ctx->rank == 0) {
        /* Frozen: every rank took the one message at install(); complete it. */
        result = progress_sends(ctx, timeout);
    }
    /* Nobody on this node uses the stage any more once all have arrived. */
    st = ctx->ops->node_barrier(ctx->transport, timeout);
    if (st != MPII_OK && result == MPII_OK)
        result = st;
    if (st != MPII_OK) {
        /* A peer of this node did not arrive (dead, or stuck): the last
         * live process of the node removes the stage. */
        mpii_status left = mpii_context_leave_node(ctx);
        if (left != MPII_OK && result == MPII_OK)
            result = left;
    } else if (ctx->node.local_rank == 0) {
        struct stat sb;
        if (ctx->stage == NULL && lstat(ctx->stage_root, &sb) == 0 &&
            (st = mpii_stage_open(ctx->stage_root, &ctx->stage)) != MPII_OK) {
            ctx->stage = NULL;
            if (result == MPII_OK)
                result = st;
        }
        if (ctx->stage != NULL && (st = mpii_stage_remove(ctx->stage)) != MPII_OK && result == MPII_OK)
            result = st;
        /* and the registry beside it: every rank of the node has arrived */
        if (ctx->registered && (st = mpii_stage_discard(ctx->stage_root)) != MPII_OK && result == MPII_OK)
            result = st;
    }
    /* A finish that failed means some rank did not answer in time: it may
     * be dead, so destroy must not wait for it (see there). */
    if (result != MPII_OK)
        ctx->unclean = 1;
    return result;
}

void mpii_context_destroy(mpii_context *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->stage != NULL)
        mpii_stage_close(ctx->stage);
    if (ctx->unclean && ctx->ops->finalize_waits_for_peers) {
        /* The end of the session timed out or failed, so a peer may be dead,
         * and this transport's finalize (MPI_Finalize) would wait for it for
         * ever: the runtime is left to the end of the process instead. */
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
