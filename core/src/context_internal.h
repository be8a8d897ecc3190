/* context_internal.h — the context struct and what its files share; not a
 * public header (nothing outside core/src includes it).
 *
 * The context's code follows the data flow of docs/design.md:
 *   context.c          the struct's life, the lock, the knowledge and the
 *                      questions asked of it (listing, file, find), forgetting
 *   read.c             the reads that fill a gap (rank 0; every rank once
 *                      frozen): listings, files, module code, replay of
 *                      recorded lists and packed images
 *   distribute.c       messages: the hello, flush and pending sends, receive,
 *                      the end of the session
 *   serve.c            a non-root rank's file bytes live in the node's stage,
 *                      not in its private memory
 *   node_index.c       messages reach a node's leader only; its other ranks
 *                      read their facts from the node's index
 *   stage_extension.c  extension modules: the $ORIGIN dependency walk, and
 *                      staging through stage.c */
#ifndef MPIIMPORT_CONTEXT_INTERNAL_H
#define MPIIMPORT_CONTEXT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "mpiimport/context.h"
#include "mpiimport/stage.h"

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
    int trim_after_merge; /* serve.c: a message's file bytes went to the stage */
    int persistent_stage; /* serving from a staged image (stage_image.c): never removed here */
    int index_watch; /* node_index.c: inotify descriptor on the node's index, or -1 */
    int node_relay;  /* this node has no stage (it cannot be made): its leader relays
                        whole messages over the transport instead of the index */
    mpii_stats stats;
};

/* Who reads an unknown fact from the file system: the root, and, once the
 * session is frozen (a replayed image), every rank for its own gaps: one
 * opendir or one file for a fact the image lacks, never a whole plain
 * import. All ranks take the same decision, so none knows more than its
 * questions needed. */
static inline int mpii_ctx_reads_itself(const mpii_context *ctx) { return ctx->rank == 0 || ctx->frozen; }

/* Facts read go to the outgoing message only while there are messages. */
static inline int mpii_ctx_sends(const mpii_context *ctx)
{
    return ctx->rank == 0 && !ctx->frozen && ctx->size > 1;
}

/* A question this rank cannot answer yet: counted, and the caller receives. */
static inline mpii_status mpii_ctx_gap(mpii_context *ctx)
{
    ctx->stats.gaps++;
    return MPII_ERR_GAP;
}

/* context.c: adds a fact to the knowledge (and to the outgoing message while
 * there are messages); a MISS fact for path. */
mpii_status mpii_ctx_record(mpii_context *ctx, const mpii_entry *e);
mpii_status mpii_ctx_record_miss(mpii_context *ctx, const char *path, uint32_t flags);

/* read.c: reads a directory into a LISTING (or MISS) fact; a file (want_bytes
 * = 0: only its stat) into a FILE (or MISS) fact. */
mpii_status mpii_ctx_read_listing(mpii_context *ctx, const char *dir);
mpii_status mpii_ctx_read_file(mpii_context *ctx, const char *path, int want_bytes);

/* serve.c: opens (makes) this node's stage; a received message's file bytes
 * go to the stage and only their facts stay (MPII_FILE_STAGED); after the
 * merge, memory the message held is given back. */
mpii_status mpii_ctx_open_stage(mpii_context *ctx);
void mpii_ctx_serve_from_stage(mpii_context *ctx, mpii_image *msg);
/* serve.c, rank 0 after serialising the outgoing message: the file bytes it
 * read go to its node's stage too, and only the facts stay. */
void mpii_ctx_serve_sent(mpii_context *ctx);
void mpii_ctx_trim(mpii_context *ctx);

/* node_index.c: the facts of each message, written by the node's leader into
 * the node's stage for the node's other ranks. write: record seq holds buf. facts: record seq
 * holds msg serialised. read: waits up to timeout_s (< 0: for ever) for
 * record seq; *buf is malloc'd. */
mpii_status mpii_ctx_index_write(mpii_context *ctx, uint64_t seq, const uint8_t *buf, size_t len);
mpii_status mpii_ctx_index_facts(mpii_context *ctx, const mpii_image *msg, uint64_t seq,
                                 const char *label);
void mpii_ctx_index_mark_failed(mpii_context *ctx, uint64_t seq);
void mpii_ctx_index_close(mpii_context *ctx);
mpii_status mpii_ctx_index_read(mpii_context *ctx, uint64_t seq, double timeout_s, void **buf,
                                size_t *len);

/* context.c: the node's stage directory, named after the job's nonce. */
mpii_status mpii_ctx_name_stage(mpii_context *ctx, uint64_t nonce);

/* distribute.c: collective, at create: every rank gets the root's nonce. */
mpii_status mpii_ctx_hello(mpii_context *ctx, uint64_t *nonce);

#endif
