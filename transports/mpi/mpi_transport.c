/* mpi_transport.c — the "mpi" transport: broadcasts and barriers over MPI.
 *
 * This file is the whole transport. It exports one symbol, mpii_mpi_ops,
 * which the generated registry lists; nothing else in mpiimport includes MPI
 * headers, so the core stays MPI-free and other transports can sit beside it.
 *
 * Communicators. init initialises MPI only if nobody has (and then finalize
 * finalises it), otherwise it borrows the application's MPI. All our traffic
 * runs on private duplicates of MPI_COMM_WORLD, with MPI_ERRORS_RETURN, so it
 * never matches the application's messages and never aborts the job:
 *   bcast_comm  (channels[0]) broadcasts only; their collective order is
 *               managed below.
 *   leaders     (channels[1]) the node leaders (local rank 0 of each node, keyed by
 *               world rank, so world rank 0 is its rank 0): group broadcasts
 *               of MPII_GROUP_LEADERS. MPI_COMM_NULL on the other ranks.
 *   node        (channels[2]) a duplicate of node_comm for MPII_GROUP_NODE
 *               broadcasts, so they never meet node barriers.
 *   ctl_comm    set-up collectives and barrier(). Separate from bcast_comm so
 *               that a barrier can never slip between the pieces of a
 *               broadcast in one rank's posting order but not in another's.
 *   node_comm   the ranks of one node (MPI_Comm_split_type SHARED), or of one
 *               simulated node of options->ranks_per_node consecutive ranks.
 *
 * Broadcast protocol. Receivers do not know a message's size, so every
 * broadcast starts with one fixed-size header block of MPII_MPI_HEADER_BYTES:
 *   [0..8)   magic "MPIIBC01" (detects a peer speaking something else)
 *   [8..16)  total length, uint64, host byte order (all ranks run one build)
 *   [16..)   the first MPII_MPI_INLINE_BYTES bytes of the message, inline
 * A message that fits inline takes exactly one MPI_Ibcast. The rest of a
 * larger message follows in further MPI_Ibcasts of at most MPII_MPI_CHUNK_BYTES
 * each (MPI counts are int), sent straight from the root's buffer (only the
 * header is a copy) and received straight into the receiver's malloc'd buffer.
 *
 * Ordering. MPI matches the collectives of one communicator by the order in
 * which each rank posts them (each broadcast communicator is a "channel"
 * with its own queue, below: the groups are ordered independently). The root posts header and chunks at once, but a
 * receiver can post its chunks only after its header has arrived. So when
 * several broadcasts are outstanding, a later one must not post anything until
 * every earlier one has posted all of its pieces. The transport keeps the
 * broadcasts that have not yet posted everything in a FIFO (post_head) and
 * advances it from every bcast_wait, whichever request that wait is for; a
 * request's own completion is then just MPI_Test on its pieces.
 *
 * Waiting. Runs are often heavily oversubscribed (8 ranks on 2 cores), and
 * Open MPI progresses non-blocking collectives only inside MPI calls. A wait
 * therefore tests, yields the CPU with sched_yield for a short while, and then
 * tests every MPII_MPI_SLEEP_NS with nanosleep in between, until done or the
 * timeout. A timed-out broadcast stays pending and resumes on the next wait.
 * A timed-out barrier stays pending too: the transport keeps its request
 * (one per communicator), and the next barrier call on that communicator
 * resumes it instead of starting another, so that a caller may wait for a
 * barrier in slices (the end of a session does, checking between slices that
 * its peers still live) and still match the other ranks' one barrier.
 *
 * Threads: MPI is initialised with MPI_THREAD_MULTIPLE when we initialise it;
 * the transport itself is not thread-safe (one thread at a time per
 * transport). Library code never prints: errors are return codes and, for
 * init, a sentence in the caller's buffer. */
#include <mpi.h>

#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpiimport/buffer.h"
#include "mpiimport/status.h"
#include "mpiimport/transport.h"
#include "mpiimport/util.h"

/* One header block: magic + length + inline data. 8 KiB keeps small files to
 * one collective while costing little when the message is large. */
#define MPII_MPI_HEADER_BYTES 8192u
#define MPII_MPI_PREFIX_BYTES 16u
#define MPII_MPI_INLINE_BYTES (MPII_MPI_HEADER_BYTES - MPII_MPI_PREFIX_BYTES)
/* Largest piece per MPI_Ibcast: 256 MiB, well under INT_MAX. */
#define MPII_MPI_CHUNK_BYTES ((size_t)256u * 1024u * 1024u)
/* Waiting: yield for this long after starting a wait, then sleep between tests. */
#define MPII_MPI_SPIN_NS 2000000L  /* 2 ms */
#define MPII_MPI_SLEEP_NS 100000L  /* 100 us */

static const unsigned char mpii_mpi_magic[8] = {'M', 'P', 'I', 'I', 'B', 'C', '0', '1'};

enum mpii_mpi_post_state {
    MPII_POST_NONE,    /* queued behind an earlier broadcast: nothing posted */
    MPII_POST_HEADER,  /* header posted, chunks not yet (receivers: length unknown until it arrives) */
    MPII_POST_ALL      /* every piece posted; completes by testing them */
};

struct mpii_bcast_channel {
    MPI_Comm comm;
    struct mpii_bcast_req *unposted_head; /* oldest request not yet MPII_POST_ALL */
    struct mpii_bcast_req *unposted_tail;
};

struct mpii_bcast_req {
    struct mpii_bcast_req *next_unposted; /* FIFO of requests not yet MPII_POST_ALL */
    struct mpii_bcast_channel *channel;
    int root;
    int is_root;
    enum mpii_mpi_post_state state;
    size_t len;                 /* known at start on the root, after the header elsewhere */
    const unsigned char *src;   /* root: the caller's buffer */
    unsigned char *data;        /* receiver: malloc'd message, handed to the caller */
    MPI_Request header_req;
    MPI_Request *chunk_reqs;    /* nchunks requests, MPI_REQUEST_NULL once complete */
    size_t nchunks;
    unsigned char header[MPII_MPI_HEADER_BYTES];
};

#define MPII_MPI_CHANNELS 3 /* world, leaders, node */

struct mpii_transport {
    struct mpii_bcast_channel channels[MPII_MPI_CHANNELS];
    MPI_Comm ctl_comm;
    MPI_Comm node_comm;
    MPI_Request ctl_barrier;              /* a timed-out barrier, resumed by the next call */
    MPI_Request node_barrier;
    int rank;
    int size;
    mpii_node_info node;
    int we_initialised_mpi;
    int thread_level;
    int self_keyval;                      /* attribute on MPI_COMM_SELF, or MPI_KEYVAL_INVALID */
    void (*before_finalize)(void *arg);   /* run when MPI_Finalize starts under us */
    void *before_finalize_arg;
    int finalizing;                       /* we are finalising: the hook has nothing to do */
};

/* MPI_Finalize deletes MPI_COMM_SELF's attributes before anything else: the
 * standard place to end a session while MPI still works. */
static int on_self_delete(MPI_Comm comm, int keyval, void *attr, void *extra)
{
    (void)comm;
    (void)keyval;
    (void)extra;
    mpii_transport *t = attr;
    if (t != NULL && !t->finalizing && t->before_finalize != NULL) {
        t->finalizing = 1;
        t->before_finalize(t->before_finalize_arg);
    }
    return MPI_SUCCESS;
}

/* ---- helpers ------------------------------------------------------------ */

static void set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, cap, fmt, ap); /* truncation is acceptable */
    va_end(ap);
    if (n < 0)
        err[0] = '\0';
}

/* Writes "what: <MPI's description of code>" into err. */
static void set_mpi_err(char *err, size_t cap, const char *what, int code)
{
    char msg[MPI_MAX_ERROR_STRING];
    int msg_len = 0;
    if (MPI_Error_string(code, msg, &msg_len) != MPI_SUCCESS || msg_len <= 0)
        set_err(err, cap, "%s failed (MPI error %d)", what, code);
    else
        set_err(err, cap, "%s failed: %.*s", what, msg_len, msg);
}

/* One pause of the wait loop: yield during the first MPII_MPI_SPIN_NS, then sleep. */
static void wait_pause(double started)
{
    if ((mpii_monotonic_s() - started) * 1e9 < (double)MPII_MPI_SPIN_NS) {
        (void)sched_yield(); /* failure only means we did not yield */
        return;
    }
    struct timespec ts = {0, MPII_MPI_SLEEP_NS};
    (void)nanosleep(&ts, NULL); /* EINTR just shortens the pause */
}

/* Has the wait that began at started with timeout_s (< 0: never) run out? */
static int wait_expired(double started, double timeout_s)
{
    return timeout_s >= 0.0 && mpii_monotonic_s() - started >= timeout_s;
}

static void free_comm(MPI_Comm *comm)
{
    if (*comm != MPI_COMM_NULL) {
        /* Nothing useful can be done if freeing fails: the handle is dropped. */
        (void)MPI_Comm_free(comm);
        *comm = MPI_COMM_NULL;
    }
}

/* ---- init / finalize ---------------------------------------------------- */

static void mpi_finalize(mpii_transport *t);

static int node_grouping(mpii_transport *t, int ranks_per_node, char *err, size_t err_cap)
{
    int rc;
    if (ranks_per_node > 0) {
        int colour = t->rank / ranks_per_node;
        rc = MPI_Comm_split(t->ctl_comm, colour, t->rank, &t->node_comm);
        if (rc != MPI_SUCCESS) {
            set_mpi_err(err, err_cap, "MPI_Comm_split (simulated nodes)", rc);
            return rc;
        }
        t->node.node_id = colour;
        t->node.node_count = (t->size + ranks_per_node - 1) / ranks_per_node;
    } else {
        rc = MPI_Comm_split_type(t->ctl_comm, MPI_COMM_TYPE_SHARED, t->rank, MPI_INFO_NULL,
                                 &t->node_comm);
        if (rc != MPI_SUCCESS) {
            set_mpi_err(err, err_cap, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", rc);
            return rc;
        }
    }
    rc = MPI_Comm_set_errhandler(t->node_comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "MPI_Comm_set_errhandler (node)", rc);
        return rc;
    }
    rc = MPI_Comm_rank(t->node_comm, &t->node.local_rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(t->node_comm, &t->node.local_size);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "MPI_Comm_rank/size (node)", rc);
        return rc;
    }
    if (ranks_per_node > 0)
        return MPI_SUCCESS;

    /* Real nodes: number them by their leaders' world ranks. The leader (local
     * rank 0, keyed by world rank) is the lowest world rank of its node, so a
     * leader's node id is the count of leaders at lower world ranks. */
    int is_leader = t->node.local_rank == 0 ? 1 : 0;
    int leaders_before = 0;
    rc = MPI_Exscan(&is_leader, &leaders_before, 1, MPI_INT, MPI_SUM, t->ctl_comm);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "MPI_Exscan (node numbering)", rc);
        return rc;
    }
    if (t->rank == 0)
        leaders_before = 0; /* MPI_Exscan leaves rank 0's result undefined */
    rc = MPI_Allreduce(&is_leader, &t->node.node_count, 1, MPI_INT, MPI_SUM, t->ctl_comm);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "MPI_Allreduce (node count)", rc);
        return rc;
    }
    t->node.node_id = leaders_before;
    rc = MPI_Bcast(&t->node.node_id, 1, MPI_INT, 0, t->node_comm);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "MPI_Bcast (node id)", rc);
        return rc;
    }
    return MPI_SUCCESS;
}

/* The group broadcasts' communicators: the leaders (keyed by world rank, so
 * a leader's rank there is its node id) and a duplicate of the node's. */
static int group_channels(mpii_transport *t, char *err, size_t err_cap)
{
    int colour = t->node.local_rank == 0 ? 0 : MPI_UNDEFINED;
    int rc = MPI_Comm_split(t->ctl_comm, colour, t->rank, &t->channels[1].comm);
    if (rc == MPI_SUCCESS && t->channels[1].comm != MPI_COMM_NULL)
        rc = MPI_Comm_set_errhandler(t->channels[1].comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_split (node leaders)", rc);
        return rc;
    }
    rc = MPI_Comm_dup(t->node_comm, &t->channels[2].comm);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(t->channels[2].comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_dup (node broadcasts)", rc);
        return rc;
    }
    return MPI_SUCCESS;
}

/* Slurm started this task (SLURM_PROCID) but no PMIx server is there for
 * MPI_Init to reach: srun without --mpi=pmix. (mpirun's tasks, and srun
 * --mpi=pmix's, have PMIX_NAMESPACE and a server URI.) */
static int launched_without_pmix(void)
{
    if (getenv("SLURM_PROCID") == NULL)
        return 0;
    static const char *const pmix_vars[] = {"PMIX_NAMESPACE", "PMIX_SERVER_URI", "PMIX_SERVER_URI2",
                                            "PMIX_SERVER_URI3", "PMIX_SERVER_URI4", "PMIX_SERVER_URI21",
                                            "OMPI_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof pmix_vars / sizeof pmix_vars[0]; i++)
        if (getenv(pmix_vars[i]) != NULL)
            return 0;
    return 1;
}

static mpii_status mpi_init(const mpii_transport_options *options, mpii_transport **out,
                            char *err, size_t err_cap)
{
    if (out == NULL) {
        set_err(err, err_cap, "mpi transport: no place for the transport handle");
        return MPII_ERR_INVALID;
    }
    *out = NULL;
    int ranks_per_node = options != NULL ? options->ranks_per_node : 0;
    if (ranks_per_node < 0) {
        set_err(err, err_cap, "mpi transport: ranks_per_node must be >= 0, got %d",
                ranks_per_node);
        return MPII_ERR_INVALID;
    }

    int initialised = 0, finalised = 0, rc;
    rc = MPI_Initialized(&initialised);
    if (rc == MPI_SUCCESS)
        rc = MPI_Finalized(&finalised);
    if (rc != MPI_SUCCESS) {
        set_err(err, err_cap, "mpi transport: cannot query the state of MPI (error %d)", rc);
        return MPII_ERR_TRANSPORT;
    }
    if (finalised) {
        set_err(err, err_cap, "mpi transport: MPI has already been finalised");
        return MPII_ERR_TRANSPORT;
    }

    if (!initialised && launched_without_pmix()) {
        /* MPI_Init would abort every task ("OMPI was not built with SLURM's
         * PMI support"): say what to do instead, and let the job import. */
        set_err(err, err_cap,
                "mpi transport: started by srun without a PMIx server (SLURM_PROCID is set, no "
                "PMIX_* variable): launch with srun --mpi=pmix (or mpirun)");
        return MPII_ERR_TRANSPORT;
    }

    mpii_transport *t = calloc(1, sizeof *t);
    if (t == NULL) {
        set_err(err, err_cap, "mpi transport: out of memory");
        return MPII_ERR_NOMEM;
    }
    for (int i = 0; i < MPII_MPI_CHANNELS; i++)
        t->channels[i].comm = MPI_COMM_NULL;
    t->ctl_comm = MPI_COMM_NULL;
    t->node_comm = MPI_COMM_NULL;
    t->ctl_barrier = MPI_REQUEST_NULL;
    t->node_barrier = MPI_REQUEST_NULL;
    t->self_keyval = MPI_KEYVAL_INVALID;

    if (!initialised) {
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &t->thread_level);
        if (rc != MPI_SUCCESS) {
            set_err(err, err_cap, "mpi transport: MPI_Init_thread failed (error %d)", rc);
            free(t);
            return MPII_ERR_TRANSPORT;
        }
        t->we_initialised_mpi = 1;
    } else {
        rc = MPI_Query_thread(&t->thread_level);
        if (rc != MPI_SUCCESS) {
            set_mpi_err(err, err_cap, "mpi transport: MPI_Query_thread", rc);
            free(t);
            return MPII_ERR_TRANSPORT;
        }
    }

    /* From here on, failures go through mpi_finalize, which frees what exists
     * and finalises MPI again if we started it (nobody else would). */
    MPI_Comm *bcast_comm = &t->channels[0].comm;
    rc = MPI_Comm_dup(MPI_COMM_WORLD, bcast_comm);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_dup (broadcast)", rc);
        goto fail;
    }
    rc = MPI_Comm_set_errhandler(*bcast_comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_set_errhandler (broadcast)", rc);
        goto fail;
    }
    rc = MPI_Comm_dup(*bcast_comm, &t->ctl_comm);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_dup (control)", rc);
        goto fail;
    }
    rc = MPI_Comm_set_errhandler(t->ctl_comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_set_errhandler (control)", rc);
        goto fail;
    }
    rc = MPI_Comm_rank(t->ctl_comm, &t->rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(t->ctl_comm, &t->size);
    if (rc != MPI_SUCCESS) {
        set_mpi_err(err, err_cap, "mpi transport: MPI_Comm_rank/size", rc);
        goto fail;
    }
    if (node_grouping(t, ranks_per_node, err, err_cap) != MPI_SUCCESS)
        goto fail;
    if (group_channels(t, err, err_cap) != MPI_SUCCESS)
        goto fail;
    if (options != NULL && options->before_finalize != NULL) {
        t->before_finalize = options->before_finalize;
        t->before_finalize_arg = options->before_finalize_arg;
        rc = MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, on_self_delete, &t->self_keyval, NULL);
        if (rc == MPI_SUCCESS)
            rc = MPI_Comm_set_attr(MPI_COMM_SELF, t->self_keyval, t);
        if (rc != MPI_SUCCESS) {
            set_mpi_err(err, err_cap, "mpi transport: MPI_COMM_SELF finalize hook", rc);
            goto fail;
        }
    }

    *out = t;
    return MPII_OK;

fail:
    mpi_finalize(t);
    return MPII_ERR_TRANSPORT;
}

/* Outstanding broadcasts are the caller's to wait for first; any left pending
 * here are dropped with their requests (MPI frees a communicator only once its
 * pending operations complete). */
static void mpi_finalize(mpii_transport *t)
{
    if (t == NULL)
        return;
    int finalised = 0;
    if (MPI_Finalized(&finalised) != MPI_SUCCESS)
        finalised = 1; /* cannot tell: touch nothing more of MPI */
    if (!finalised) {
        if (t->self_keyval != MPI_KEYVAL_INVALID) {
            t->finalizing = 1;
            (void)MPI_Comm_delete_attr(MPI_COMM_SELF, t->self_keyval);
            (void)MPI_Comm_free_keyval(&t->self_keyval);
        }
        free_comm(&t->node_comm);
        free_comm(&t->ctl_comm);
        for (int i = MPII_MPI_CHANNELS - 1; i >= 0; i--)
            free_comm(&t->channels[i].comm);
        if (t->we_initialised_mpi)
            (void)MPI_Finalize(); /* nothing left to report an error to */
    }
    free(t);
}

/* ---- queries ------------------------------------------------------------ */

static int mpi_rank(const mpii_transport *t) { return t != NULL ? t->rank : -1; }

static int mpi_size(const mpii_transport *t) { return t != NULL ? t->size : -1; }

static mpii_status mpi_node_info(const mpii_transport *t, mpii_node_info *info)
{
    if (t == NULL || info == NULL)
        return MPII_ERR_INVALID;
    *info = t->node;
    return MPII_OK;
}

/* ---- broadcast ---------------------------------------------------------- */

/* Posts the chunk broadcasts of req's remainder (the bytes past the inline
 * part): from the root's buffer on the root, into req->data elsewhere.
 * Resumable: it continues after the chunks already posted. */
static mpii_status post_chunks(struct mpii_bcast_req *req)
{
    size_t rest = req->len > MPII_MPI_INLINE_BYTES ? req->len - MPII_MPI_INLINE_BYTES : 0;
    size_t total = rest / MPII_MPI_CHUNK_BYTES + (rest % MPII_MPI_CHUNK_BYTES != 0);
    if (total > 0 && req->chunk_reqs == NULL) {
        req->chunk_reqs = malloc(total * sizeof *req->chunk_reqs);
        if (req->chunk_reqs == NULL)
            return MPII_ERR_NOMEM;
        for (size_t i = 0; i < total; i++)
            req->chunk_reqs[i] = MPI_REQUEST_NULL;
    }
    while (req->nchunks < total) {
        size_t off = MPII_MPI_INLINE_BYTES + req->nchunks * MPII_MPI_CHUNK_BYTES;
        size_t n = req->len - off < MPII_MPI_CHUNK_BYTES ? req->len - off : MPII_MPI_CHUNK_BYTES;
        /* MPI_Ibcast takes a non-const buffer; the root's is only read. */
        void *p = req->is_root ? (void *)(uintptr_t)(req->src + off) : (void *)(req->data + off);
        if (MPI_Ibcast(p, (int)n, MPI_BYTE, req->root, req->channel->comm,
                       &req->chunk_reqs[req->nchunks]) != MPI_SUCCESS)
            return MPII_ERR_TRANSPORT;
        req->nchunks++;
    }
    return MPII_OK;
}

/* Receiver: the header has arrived; learn the length, allocate and copy the
 * inline part. Idempotent, so a retry after MPII_ERR_NOMEM is safe. */
static mpii_status header_arrived(struct mpii_bcast_req *req)
{
    if (memcmp(req->header, mpii_mpi_magic, sizeof mpii_mpi_magic) != 0)
        return MPII_ERR_CORRUPT;
    uint64_t len64;
    memcpy(&len64, req->header + sizeof mpii_mpi_magic, sizeof len64);
#if SIZE_MAX < UINT64_MAX
    if (len64 > SIZE_MAX)
        return MPII_ERR_NOMEM;
#endif
    req->len = (size_t)len64;
    if (req->len > 0 && req->data == NULL) {
        req->data = mpii_buffer_alloc(req->len);
        if (req->data == NULL)
            return MPII_ERR_NOMEM;
    }
    size_t inl = req->len < MPII_MPI_INLINE_BYTES ? req->len : MPII_MPI_INLINE_BYTES;
    if (inl > 0)
        memcpy(req->data, req->header + MPII_MPI_PREFIX_BYTES, inl);
    return MPII_OK;
}

/* Advances the FIFO of not-fully-posted requests as far as it goes without
 * blocking: posts the head's header, (receivers) tests it, posts the chunks,
 * pops. Every step is resumable, so after an error the next call retries
 * from where this one stopped; an error may belong to an earlier request
 * than the one being waited for, and it blocks every later one. */
static mpii_status advance_channel(struct mpii_bcast_channel *c)
{
    while (c->unposted_head != NULL) {
        struct mpii_bcast_req *req = c->unposted_head;
        if (req->state == MPII_POST_NONE) {
            if (MPI_Ibcast(req->header, (int)MPII_MPI_HEADER_BYTES, MPI_BYTE, req->root,
                           c->comm, &req->header_req) != MPI_SUCCESS)
                return MPII_ERR_TRANSPORT;
            req->state = MPII_POST_HEADER;
        }
        if (!req->is_root) {
            int flag = 0;
            /* Testing a completed (now null) request again just reports done. */
            if (MPI_Test(&req->header_req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return MPII_ERR_TRANSPORT;
            if (!flag)
                return MPII_OK;
            mpii_status st = header_arrived(req);
            if (st != MPII_OK)
                return st;
        }
        mpii_status st = post_chunks(req);
        if (st != MPII_OK)
            return st;
        req->state = MPII_POST_ALL;
        c->unposted_head = req->next_unposted;
        if (c->unposted_head == NULL)
            c->unposted_tail = NULL;
        req->next_unposted = NULL;
    }
    return MPII_OK;
}

/* Every channel, so that waiting on one broadcast keeps the others' posting
 * going; the first error is reported (each channel retries on the next call). */
static mpii_status advance_posting(mpii_transport *t)
{
    mpii_status result = MPII_OK;
    for (int i = 0; i < MPII_MPI_CHANNELS; i++) {
        if (t->channels[i].comm == MPI_COMM_NULL)
            continue;
        mpii_status st = advance_channel(&t->channels[i]);
        if (st != MPII_OK && result == MPII_OK)
            result = st;
    }
    return result;
}

static void free_req(struct mpii_bcast_req *req)
{
    free(req->chunk_reqs);
    free(req->data);
    free(req);
}

/* After MPI_Finalize (an application may call it before our exit handler
 * runs) no MPI call is allowed: every operation reports a transport error. */
static int mpi_gone(void)
{
    int finalised = 0;
    return MPI_Finalized(&finalised) != MPI_SUCCESS || finalised;
}

/* root and me: ranks in the channel's communicator. */
static mpii_status channel_bcast_start(mpii_transport *t, struct mpii_bcast_channel *c, int root,
                                       int me, const void *buf, size_t len, mpii_bcast_req **out)
{
    *out = NULL;
    int is_root = root == me;
    if (is_root && len > 0 && buf == NULL)
        return MPII_ERR_INVALID;

    /* Not calloc: the header block needs no zeroing on receivers. */
    struct mpii_bcast_req *req = malloc(sizeof *req);
    if (req == NULL)
        return MPII_ERR_NOMEM;
    req->next_unposted = NULL;
    req->channel = c;
    req->root = root;
    req->is_root = is_root;
    req->state = MPII_POST_NONE;
    req->len = is_root ? len : 0;
    req->src = is_root ? buf : NULL;
    req->data = NULL;
    req->header_req = MPI_REQUEST_NULL;
    req->chunk_reqs = NULL;
    req->nchunks = 0;
    if (is_root) {
        uint64_t len64 = (uint64_t)len;
        size_t inl = len < MPII_MPI_INLINE_BYTES ? len : MPII_MPI_INLINE_BYTES;
        memcpy(req->header, mpii_mpi_magic, sizeof mpii_mpi_magic);
        memcpy(req->header + sizeof mpii_mpi_magic, &len64, sizeof len64);
        if (inl > 0)
            memcpy(req->header + MPII_MPI_PREFIX_BYTES, buf, inl);
        /* Zero the unused tail so no stale heap bytes go on the wire. */
        memset(req->header + MPII_MPI_PREFIX_BYTES + inl, 0, MPII_MPI_INLINE_BYTES - inl);
    }

    if (c->unposted_tail != NULL)
        c->unposted_tail->next_unposted = req;
    else
        c->unposted_head = req;
    c->unposted_tail = req;

    /* Post what can be posted now. A failure here may concern an earlier
     * request and is retried and reported by the next bcast_wait, so the
     * new request is handed out regardless. */
    mpii_status st = advance_posting(t);
    (void)st;
    *out = req;
    return MPII_OK;
}

static mpii_status mpi_bcast_start(mpii_transport *t, int root, const void *buf, size_t len,
                                   mpii_bcast_req **out)
{
    if (mpi_gone())
        return MPII_ERR_TRANSPORT;
    if (t == NULL || out == NULL || root < 0 || root >= t->size)
        return MPII_ERR_INVALID;
    return channel_bcast_start(t, &t->channels[0], root, t->rank, buf, len, out);
}

static mpii_status mpi_group_bcast_start(mpii_transport *t, int group, const void *buf,
                                         size_t len, mpii_bcast_req **out)
{
    if (mpi_gone())
        return MPII_ERR_TRANSPORT;
    if (t == NULL || out == NULL)
        return MPII_ERR_INVALID;
    *out = NULL;
    if (group == MPII_GROUP_LEADERS && t->node.local_rank == 0 &&
        t->channels[1].comm != MPI_COMM_NULL)
        return channel_bcast_start(t, &t->channels[1], 0, t->node.node_id, buf, len, out);
    if (group == MPII_GROUP_NODE)
        return channel_bcast_start(t, &t->channels[2], 0, t->node.local_rank, buf, len, out);
    return MPII_ERR_INVALID;
}

/* Tests every posted piece of req; *done when all have completed. */
static mpii_status test_pieces(struct mpii_bcast_req *req, int *done)
{
    *done = 0;
    int flag = 0;
    if (MPI_Test(&req->header_req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return MPII_ERR_TRANSPORT;
    if (!flag)
        return MPII_OK;
    if (req->nchunks > 0) {
        /* Chunks complete in order; MPI_Testall over all of them would also
         * do, but testing front to back keeps each call short. */
        for (size_t i = 0; i < req->nchunks; i++) {
            if (req->chunk_reqs[i] == MPI_REQUEST_NULL)
                continue;
            if (MPI_Test(&req->chunk_reqs[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return MPII_ERR_TRANSPORT;
            if (!flag)
                return MPII_OK;
        }
    }
    *done = 1;
    return MPII_OK;
}

static mpii_status mpi_bcast_wait(mpii_transport *t, mpii_bcast_req *req, double timeout_s,
                                  void **buf, size_t *len)
{
    if (mpi_gone())
        return MPII_ERR_TRANSPORT;
    if (t == NULL || req == NULL)
        return MPII_ERR_INVALID;
    double started = mpii_monotonic_s();
    for (;;) {
        mpii_status st = advance_posting(t);
        if (st != MPII_OK)
            return st;
        if (req->state == MPII_POST_ALL) {
            int done = 0;
            st = test_pieces(req, &done);
            if (st != MPII_OK)
                return st;
            if (done)
                break;
        }
        if (wait_expired(started, timeout_s))
            return MPII_ERR_TIMEOUT;
        wait_pause(started);
    }

    if (len != NULL)
        *len = req->len;
    if (buf != NULL) {
        *buf = req->data; /* NULL on the root and for empty messages */
        req->data = NULL;
    }
    free_req(req);
    return MPII_OK;
}

/* ---- barriers ----------------------------------------------------------- */

/* *pending: the communicator's barrier left by a timed-out call (resumed),
 * else MPI_REQUEST_NULL (a new barrier starts). MPI_Test resets it to
 * MPI_REQUEST_NULL once the barrier completes. */
static mpii_status ibarrier_wait(MPI_Comm comm, MPI_Request *pending, double timeout_s)
{
    if (*pending == MPI_REQUEST_NULL && MPI_Ibarrier(comm, pending) != MPI_SUCCESS) {
        *pending = MPI_REQUEST_NULL;
        return MPII_ERR_TRANSPORT;
    }
    double started = mpii_monotonic_s();
    for (;;) {
        int flag = 0;
        if (MPI_Test(pending, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return MPII_ERR_TRANSPORT;
        if (flag)
            return MPII_OK;
        if (wait_expired(started, timeout_s))
            return MPII_ERR_TIMEOUT; /* still pending: the next call resumes it */
        wait_pause(started);
    }
}

static mpii_status mpi_barrier(mpii_transport *t, double timeout_s)
{
    if (mpi_gone())
        return MPII_ERR_TRANSPORT;
    if (t == NULL)
        return MPII_ERR_INVALID;
    return ibarrier_wait(t->ctl_comm, &t->ctl_barrier, timeout_s);
}

static mpii_status mpi_node_barrier(mpii_transport *t, double timeout_s)
{
    if (mpi_gone())
        return MPII_ERR_TRANSPORT;
    if (t == NULL)
        return MPII_ERR_INVALID;
    return ibarrier_wait(t->node_comm, &t->node_barrier, timeout_s);
}

const mpii_transport_ops mpii_mpi_ops = {
    .name = "mpi",
    .init = mpi_init,
    .rank = mpi_rank,
    .size = mpi_size,
    .node_info = mpi_node_info,
    .bcast_start = mpi_bcast_start,
    .bcast_wait = mpi_bcast_wait,
    .group_bcast_start = mpi_group_bcast_start,
    .barrier = mpi_barrier,
    .node_barrier = mpi_node_barrier,
    .finalize = mpi_finalize,
    .finalize_waits_for_peers = 1,
};
