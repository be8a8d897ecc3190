/* distribute.c — the DISTRIBUTE stage: the messages between the root and the
 * other ranks over the transport. The hello (the job nonce) at create; the
 * root's flush of the outgoing facts as one serialised image, broadcast
 * without waiting (pending sends completed later); the others' receive and
 * merge into their knowledge; freezing (no more messages); and the end of the
 * session: the END marker and the drain to it (so the broadcast counts always
 * match), the node barrier and the removal of the node's stage. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "context_internal.h"
#include "mpiimport/util.h"

/* The control messages: 8 bytes of magic, a u64 (the nonce; the last sequence
 * number sent). */
#define HELLO_MAGIC "MPIIHELO"
#define END_MAGIC "MPIIEND!"
#define CTRL_SIZE 16

/* ---- the hello ---- */

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

mpii_status mpii_ctx_hello(mpii_context *ctx, uint64_t *nonce)
{
    uint8_t hello[CTRL_SIZE];
    memcpy(hello, HELLO_MAGIC, 8);
    mpii_put_u64(hello + 8, make_nonce());
    mpii_status st;
    if (ctx->size > 1 && (st = bcast_ctrl(ctx, hello)) != MPII_OK)
        return st;
    if (memcmp(hello, HELLO_MAGIC, 8) != 0)
        return MPII_ERR_CORRUPT;
    *nonce = mpii_get_u64(hello + 8);
    return MPII_OK;
}

/* ---- out: the root's messages ---- */

/* Root: completes the sends whose receivers have all arrived. timeout_s
 * bounds the whole call (not each send: hundreds of sends stuck behind a dead
 * rank would otherwise take hundreds of timeouts); < 0 waits for ever. */
static mpii_status progress_sends(mpii_context *ctx, double timeout_s)
{
    size_t kept = 0;
    mpii_status result = MPII_OK;
    double deadline = mpii_monotonic_s() + (timeout_s > 0 ? timeout_s : 0.0);
    for (size_t i = 0; i < ctx->nsends; i++) {
        void *unused = NULL;
        size_t ulen = 0;
        double left = timeout_s;
        if (timeout_s > 0) {
            left = deadline - mpii_monotonic_s();
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

/* Root: starts broadcasting buf (taken over: freed once sent, or on error). */
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
    double t0 = mpii_monotonic_s();
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
    ctx->stats.bcast_s += mpii_monotonic_s() - t0;
    return st == MPII_ERR_TIMEOUT ? MPII_OK : st;
}

static mpii_status flush(mpii_context *ctx, const char *label, int always)
{
    if (ctx == NULL)
        return MPII_ERR_INVALID;
    if (ctx->rank == 0 && ctx->frozen) {
        mpii_image_clear(ctx->outgoing);
        /* the one message (an image) may still be in flight: collect it as
         * soon as every rank has it, so its buffer is not kept to the end */
        if (ctx->nsends > 0) {
            mpii_status st = progress_sends(ctx, 0);
            (void)st; /* errors stay with the send; finish reports them */
        }
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
    mpii_ctx_serve_sent(ctx);
    mpii_image_clear(ctx->outgoing);
    mpii_ctx_trim(ctx);
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

/* ---- in: the other ranks ---- */

mpii_status mpii_context_receive(mpii_context *ctx, double timeout_s, char *label, size_t label_cap)
{
    if (ctx == NULL || ctx->rank == 0)
        return MPII_ERR_INVALID;
    if (label != NULL && label_cap > 0)
        label[0] = '\0';
    if (ctx->ended || ctx->frozen)
        return MPII_ERR_ENDED;
    double t0 = mpii_monotonic_s();
    mpii_status st;
    if (ctx->receiving == NULL &&
        (st = ctx->ops->bcast_start(ctx->transport, 0, NULL, 0, &ctx->receiving)) != MPII_OK) {
        ctx->receiving = NULL;
        return st;
    }
    void *buf = NULL;
    size_t len = 0;
    st = ctx->ops->bcast_wait(ctx->transport, ctx->receiving, timeout_s, &buf, &len);
    ctx->stats.bcast_s += mpii_monotonic_s() - t0;
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
    mpii_ctx_serve_from_stage(ctx, msg); /* unlocked: msg is this call's own */
    /* The wait above ran unlocked (a reader in another thread goes on); the
     * merge moves entries, so it holds the lock readers hold. */
    mpii_context_lock(ctx);
    st = mpii_image_merge(ctx->known, msg);
    mpii_context_unlock(ctx);
    mpii_image_destroy(msg);
    mpii_ctx_trim(ctx);
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
            mpii_put_u64(end + 8, ctx->seq_sent);
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
