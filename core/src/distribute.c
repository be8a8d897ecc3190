/* distribute.c — the DISTRIBUTE stage: the messages between the root and the
 * other ranks. The hello (the job nonce) at create; the root's flush of the
 * outgoing facts as one serialised image, broadcast to the node leaders
 * without waiting (pending sends completed later); the others' receive and
 * merge into their knowledge — a leader over the transport, staging the
 * bytes and writing the facts to its node's index, every other rank from
 * that index (node_index.c), so it receives nothing over the transport;
 * freezing (no more messages); and the end of the session: the END marker
 * and the drain to it (so the broadcast counts always match), the node
 * barrier and the removal of the node's stage — waits with no deadline while
 * the peers live, however much later they finish (wait_for_peers). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
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
#define HELLO_RELAY_MAGIC "MPIIHELR" /* to a node whose stage cannot be made */
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

static int is_leader(const mpii_context *ctx) { return ctx->node.local_rank == 0; }

/* Messages go over the transport only between nodes. */
static int leaders_bcast(const mpii_context *ctx) { return ctx->node.node_count > 1; }

/* A blocking group broadcast with the configured timeout, for the control
 * messages: among the leaders (from rank 0) or within the node (from its
 * leader). */
static mpii_status bcast_ctrl(mpii_context *ctx, int group, uint8_t msg[CTRL_SIZE])
{
    mpii_bcast_req *req = NULL;
    mpii_status st = ctx->ops->group_bcast_start(ctx->transport, group, msg, CTRL_SIZE, &req);
    if (st != MPII_OK)
        return st;
    void *buf = NULL;
    size_t len = 0;
    st = ctx->ops->bcast_wait(ctx->transport, req, ctx->cfg.timeout_s, &buf, &len);
    if (st != MPII_OK)
        return st;
    int root = group == MPII_GROUP_LEADERS ? ctx->rank == 0 : is_leader(ctx);
    if (!root) {
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
    /* rank 0 to the leaders, each leader to its node */
    if (ctx->size > 1 && is_leader(ctx) && leaders_bcast(ctx) &&
        (st = bcast_ctrl(ctx, MPII_GROUP_LEADERS, hello)) != MPII_OK)
        return st;
    if (memcmp(hello, HELLO_MAGIC, 8) != 0)
        return MPII_ERR_CORRUPT;
    *nonce = mpii_get_u64(hello + 8);
    if (ctx->size > 1 && ctx->node.local_size > 1) {
        /* The node's index lives in its stage: a leader that cannot make it
         * relays whole messages to its node over the transport instead. */
        if (is_leader(ctx) && (st = mpii_ctx_name_stage(ctx, *nonce)) == MPII_OK &&
            mpii_ctx_open_stage(ctx) != MPII_OK)
            memcpy(hello, HELLO_RELAY_MAGIC, 8);
        if ((st = bcast_ctrl(ctx, MPII_GROUP_NODE, hello)) != MPII_OK)
            return st;
        ctx->node_relay = memcmp(hello, HELLO_RELAY_MAGIC, 8) == 0;
        if (!ctx->node_relay && memcmp(hello, HELLO_MAGIC, 8) != 0)
            return MPII_ERR_CORRUPT;
        *nonce = mpii_get_u64(hello + 8);
    }
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

/* Starts broadcasting buf to a group (taken over: freed once sent, or on
 * error); completed by progress_sends. */
static mpii_status start_group_send(mpii_context *ctx, int group, uint8_t *buf, size_t len)
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
    mpii_status st = ctx->ops->group_bcast_start(ctx->transport, group, buf, len, &req);
    if (st != MPII_OK) {
        free(buf);
        return st;
    }
    ctx->sends[ctx->nsends++] = (struct pending_send){req, buf};
    st = progress_sends(ctx, 0);
    ctx->stats.bcast_s += mpii_monotonic_s() - t0;
    return st == MPII_ERR_TIMEOUT ? MPII_OK : st;
}

/* A leader of a relaying node (no stage, so no index): the whole message,
 * a copy of buf, to the node's other ranks. */
static mpii_status relay_to_node(mpii_context *ctx, const void *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return MPII_ERR_NOMEM;
    if (len > 0)
        memcpy(copy, buf, len);
    return start_group_send(ctx, MPII_GROUP_NODE, copy, len);
}

/* A leader: message seq (buf, len: as sent or received; msg: its facts once
 * the bytes are staged, or NULL for the END marker) to the node's other
 * ranks, through the index, or relayed whole when the index cannot take it.
 * The root does the same for its own node as it sends. */
static mpii_status pass_to_node(mpii_context *ctx, uint64_t seq, const void *buf, size_t len,
                                const mpii_image *msg, const char *label)
{
    if (ctx->size < 2 || ctx->node.local_size < 2 || !is_leader(ctx))
        return MPII_OK;
    if (!ctx->node_relay) {
        mpii_status st = msg != NULL ? mpii_ctx_index_facts(ctx, msg, seq, label)
                                     : mpii_ctx_index_write(ctx, seq, buf, len);
        if (st == MPII_OK)
            return MPII_OK;
        /* From this record on the node is relayed: its readers see the mark. */
        mpii_ctx_index_mark_failed(ctx, seq);
        ctx->node_relay = 1;
    }
    return relay_to_node(ctx, buf, len);
}

/* Root: message seq (buf taken over) to its own node, then to the other
 * leaders. */
static mpii_status start_send(mpii_context *ctx, uint64_t seq, uint8_t *buf, size_t len,
                              const mpii_image *facts, const char *label)
{
    ctx->stats.bcast_count++;
    ctx->stats.bcast_bytes += len;
    mpii_status st = pass_to_node(ctx, seq, buf, len, facts, label);
    if (st != MPII_OK || !leaders_bcast(ctx)) {
        free(buf); /* one node: its index (or relay) is the only way out */
        return st;
    }
    return start_group_send(ctx, MPII_GROUP_LEADERS, buf, len);
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
    /* what is left of the outgoing image is its facts (the bytes are staged):
     * what this node's other ranks read from the index */
    mpii_ctx_serve_sent(ctx);
    ctx->seq_sent++;
    st = start_send(ctx, ctx->seq_sent, buf, len, ctx->outgoing, label);
    mpii_image_clear(ctx->outgoing);
    mpii_ctx_trim(ctx);
    return st;
}

mpii_status mpii_context_flush(mpii_context *ctx, const char *label) { return flush(ctx, label, 0); }

mpii_status mpii_context_flush_always(mpii_context *ctx, const char *label)
{
    return flush(ctx, label, 1);
}

void mpii_context_freeze(mpii_context *ctx)
{
    if (ctx == NULL)
        return;
    ctx->frozen = 1;
    /* A relaying leader's copy of the one message: its node's ranks are
     * taking it now, in install(); the root's completes as the leaders take it. */
    if (ctx->rank != 0 && ctx->nsends > 0) {
        mpii_status st = progress_sends(ctx, ctx->cfg.timeout_s);
        (void)st; /* still pending: finish completes or reports it */
    }
}

int mpii_context_frozen(const mpii_context *ctx) { return ctx != NULL && ctx->frozen; }

/* ---- in: the other ranks ---- */

/* Takes the next message in: a leader, or a rank of a relaying node, over
 * the transport (*via_transport set); any other rank from the node's index.
 * A reader that finds the index record marked failed (its leader could not
 * write it) turns to the relay for it and every later message. */
static mpii_status take_next(mpii_context *ctx, double timeout_s, void **buf, size_t *len,
                             int *via_transport)
{
    mpii_status st;
    if (!is_leader(ctx) && !ctx->node_relay) {
        st = mpii_ctx_index_read(ctx, ctx->seq_received + 1, timeout_s, buf, len);
        if (st != MPII_ERR_NOSPACE)
            return st;
        ctx->node_relay = 1;
    }
    *via_transport = 1;
    int group = is_leader(ctx) ? MPII_GROUP_LEADERS : MPII_GROUP_NODE;
    if (ctx->receiving == NULL &&
        (st = ctx->ops->group_bcast_start(ctx->transport, group, NULL, 0, &ctx->receiving)) != MPII_OK) {
        ctx->receiving = NULL;
        return st;
    }
    st = ctx->ops->bcast_wait(ctx->transport, ctx->receiving, timeout_s, buf, len);
    if (st == MPII_ERR_TIMEOUT)
        return st;
    ctx->receiving = NULL;
    if (st == MPII_OK)
        ctx->stats.received_bytes += *len;
    return st;
}

mpii_status mpii_context_receive(mpii_context *ctx, double timeout_s, char *label, size_t label_cap)
{
    if (ctx == NULL || ctx->rank == 0)
        return MPII_ERR_INVALID;
    if (label != NULL && label_cap > 0)
        label[0] = '\0';
    if (ctx->ended || ctx->frozen)
        return MPII_ERR_ENDED;
    double t0 = mpii_monotonic_s();
    void *buf = NULL;
    size_t len = 0;
    int via_transport = 0;
    mpii_status st = take_next(ctx, timeout_s, &buf, &len, &via_transport);
    ctx->stats.bcast_s += mpii_monotonic_s() - t0;
    if (st != MPII_OK)
        return st;
    ctx->stats.bcast_count++;
    ctx->stats.bcast_bytes += len;
    if (len == CTRL_SIZE && memcmp(buf, END_MAGIC, 8) == 0) {
        ctx->ended = 1;
        /* and to the node: the END record follows the last message's */
        st = pass_to_node(ctx, ctx->seq_received + 1, buf, len, NULL, NULL);
        free(buf);
        return st != MPII_OK ? st : MPII_ERR_ENDED;
    }
    mpii_image *msg = NULL;
    uint64_t seq = 0;
    char own_label[256];
    if (label == NULL || label_cap == 0) {
        label = own_label;
        label_cap = sizeof own_label;
    }
    st = mpii_image_parse(buf, len, &msg, &seq, label, label_cap);
    if (st == MPII_OK && seq != ctx->seq_received + 1) {
        mpii_image_destroy(msg);
        st = MPII_ERR_CORRUPT;
    }
    if (st != MPII_OK) {
        free(buf);
        return st;
    }
    ctx->seq_received = seq;
    /* A message from the transport: its file bytes go to the stage (and its
     * MPII_FILE_STAGED notes are dropped); the index's facts are this node's
     * own. Unlocked: msg is this call's own. */
    if (via_transport)
        mpii_ctx_serve_from_stage(ctx, msg);
    mpii_status pst = pass_to_node(ctx, seq, buf, len, msg, label);
    free(buf);
    /* The wait above ran unlocked (a reader in another thread goes on); the
     * merge moves entries, so it holds the lock readers hold. */
    mpii_context_lock(ctx);
    st = mpii_image_merge(ctx->known, msg);
    mpii_context_unlock(ctx);
    mpii_image_destroy(msg);
    /* Parsing and merging leave the freed copies of the facts as holes in
     * the heap: give the pages back after a large record, and now and then
     * after small ones, so that a rank's private memory is its facts. */
    if (!via_transport && (len >= ((size_t)64 << 10) || seq % 32 == 0))
        ctx->trim_after_merge = 1;
    mpii_ctx_trim(ctx);
    return st != MPII_OK ? st : pst;
}

/* ---- end of session ---- */

/* Failures of bytes, not of peers: a node's index that could not be
 * written or read, a message that did not parse. */
static int data_failure(mpii_status st)
{
    return st == MPII_ERR_NOSPACE || st == MPII_ERR_IO || st == MPII_ERR_UNSAFE ||
           st == MPII_ERR_CHECKSUM || st == MPII_ERR_CORRUPT || st == MPII_ERR_TRUNCATED ||
           st == MPII_ERR_VERSION;
}

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

/* ---- waiting for peers at the end ---- */

/* Waits at the end of the session, for peers that may finish much later
 * than this rank (a rank that computes longer is no fault): MPI_Finalize
 * would wait for them too, so these waits have no deadline while the peers
 * live. A first wait of up to END_FIRST_S at the transport's own pace (the
 * usual end, with everyone there); then polls with a sleep growing from
 * END_PAUSE_MIN_NS to END_PAUSE_MAX_NS in between, so that a rank waiting at
 * exit takes next to no CPU from a peer that computes; every END_CHECK_S,
 * the node's registry is asked whether a process of the job died. */
#define END_FIRST_S 1.0
#define END_POLL_S 1e-6 /* > 0: progress_sends reads 0 as "collect only" */
#define END_PAUSE_MIN_NS 1000000L  /* 1 ms */
#define END_PAUSE_MAX_NS 20000000L /* 20 ms */
#define END_CHECK_S 1.0

/* A process of this job on this node died without leaving: the node's
 * registry (stage_registry.c: "<stage root>.live/<pid>", one per process,
 * removed by a process that leaves) names a pid that is gone. 0 when the
 * registry cannot tell (never made, unreadable): a dead peer is then the
 * launcher's business, which ends the job as it would without mpiimport. */
static int node_peer_died(const mpii_context *ctx)
{
    char live[sizeof ctx->stage_root + 8];
    int n = snprintf(live, sizeof live, "%s.live", ctx->stage_root);
    if (ctx->stage_root[0] != '/' || n < 0 || (size_t)n >= sizeof live)
        return 0;
    DIR *d = opendir(live);
    if (d == NULL)
        return 0;
    int died = 0;
    struct dirent *ent;
    while (!died && (ent = readdir(d)) != NULL) {
        const char *p = ent->d_name;
        long pid = 0;
        while (isdigit((unsigned char)*p) && pid < 100000000L)
            pid = pid * 10 + (*p++ - '0');
        if (*p != '\0' || pid <= 0 || pid == (long)getpid())
            continue;
        died = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
    }
    if (closedir(d) != 0)
        return 0;
    return died;
}

typedef mpii_status (*end_wait_fn)(mpii_context *ctx, double timeout_s);

/* MPII_ERR_TIMEOUT only once a process of the node is known dead, or, in a
 * job of one node, once every process of it has waited at its end for
 * MPIIMPORT_TIMEOUT (at least END_STALL_MIN_S) with no progress: nobody is
 * left to compute, so the transport itself is stuck (a forked child's exit
 * can break a fabric endpoint it shared), and waiting on would hang the job
 * for ever. */
#define END_STALL_MIN_S 10.0
static mpii_status wait_for_peers(mpii_context *ctx, end_wait_fn fn)
{
    double first = ctx->cfg.timeout_s < END_FIRST_S ? ctx->cfg.timeout_s : END_FIRST_S;
    mpii_status st = fn(ctx, first);
    long pause_ns = END_PAUSE_MIN_NS;
    double checked = mpii_monotonic_s(), all_ended_since = -1.0;
    double stall_s = ctx->cfg.timeout_s > END_STALL_MIN_S ? ctx->cfg.timeout_s : END_STALL_MIN_S;
    int one_node = ctx->node.local_size == ctx->size;
    if (st == MPII_ERR_TIMEOUT && ctx->registered) {
        mpii_status marked = mpii_stage_at_end(ctx->stage_root);
        (void)marked; /* unmarked: this node's stall is never concluded, only waited out */
    }
    while (st == MPII_ERR_TIMEOUT) {
        double now = mpii_monotonic_s();
        if (now - checked >= END_CHECK_S) {
            if (node_peer_died(ctx))
                return st;
            if (one_node && ctx->registered && mpii_stage_all_at_end(ctx->stage_root)) {
                if (all_ended_since < 0)
                    all_ended_since = now;
                else if (now - all_ended_since >= stall_s)
                    return st;
            } else {
                all_ended_since = -1.0;
            }
            checked = now;
        }
        struct timespec ts = {0, pause_ns};
        (void)nanosleep(&ts, NULL); /* EINTR just shortens the pause */
        pause_ns = pause_ns * 2 < END_PAUSE_MAX_NS ? pause_ns * 2 : END_PAUSE_MAX_NS;
        st = fn(ctx, END_POLL_S);
    }
    return st;
}

static mpii_status end_receive(mpii_context *ctx, double timeout_s)
{
    return mpii_context_receive(ctx, timeout_s, NULL, 0);
}

static mpii_status end_sends(mpii_context *ctx, double timeout_s)
{
    return progress_sends(ctx, timeout_s);
}

static mpii_status end_node_barrier(mpii_context *ctx, double timeout_s)
{
    return ctx->ops->node_barrier(ctx->transport, timeout_s);
}

mpii_status mpii_context_finish(mpii_context *ctx)
{
    if (ctx == NULL)
        return MPII_ERR_INVALID;
    if (ctx->finished || ctx->transport == NULL)
        return MPII_OK;
    ctx->finished = 1;
    mpii_status result = MPII_OK, st;
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
                st = start_send(ctx, ctx->seq_sent + 1, end, CTRL_SIZE, NULL, NULL);
            else
                free(end);
            if (st == MPII_OK)
                st = wait_for_peers(ctx, end_sends);
            result = st;
        } else {
            /* Drain every message the root sent, up to its end marker. */
            while ((st = wait_for_peers(ctx, end_receive)) == MPII_OK)
                ;
            if (st != MPII_ERR_ENDED)
                result = st;
            /* a relaying leader: its node's copies */
            if (ctx->nsends > 0 && (st = wait_for_peers(ctx, end_sends)) != MPII_OK && result == MPII_OK)
                result = st;
        }
    } else if (ctx->size > 1 && ctx->nsends > 0) {
        /* Frozen: every rank took the one message at install(); complete it
         * (the root's, or a relaying leader's copy for its node). */
        result = wait_for_peers(ctx, end_sends);
    }
    /* Nobody on this node uses the stage any more once all have arrived. */
    st = wait_for_peers(ctx, end_node_barrier);
    int node_here = st == MPII_OK;
    if (st != MPII_OK && result == MPII_OK)
        result = st;
    if (st != MPII_OK) {
        /* A peer of this node did not arrive (dead, or stuck): the last
         * live process of the node removes the stage. */
        mpii_status left = mpii_context_leave_node(ctx);
        if (left != MPII_OK && result == MPII_OK)
            result = left;
    } else if (ctx->node.local_rank == 0 && !ctx->persistent_stage) {
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
    if (node_here)
        ctx->registered = 0; /* the node's first rank removes the registry (above) */
    /* A finish that failed means a rank died (or the transport failed), so
     * destroy must not wait for it (see there). Bad bytes (a
     * corrupt message, a node's index that could not be written or read)
     * say nothing of the peers, and the barrier above says this node's
     * ranks are all here. */
    if (result != MPII_OK && !(node_here && data_failure(result)))
        ctx->unclean = 1;
    return result;
}
