/* tree_bcast.c — broadcast and barrier algorithms over the point-to-point
 * layer of p2p.h, shared by the fabric transports (ofi, ucx) so that each of
 * them only moves tagged messages.
 *
 * Broadcast. Ranks are renumbered relative to the root (vr = rank - root mod
 * size) and arranged in a binomial tree: the parent of vr is vr with its
 * lowest set bit cleared, and its children are vr + m for the powers of two m
 * below that bit (the root: all powers below size), largest subtree first.
 * A group broadcast builds the same tree over positions in its member list
 * (position 0, members[0], is the root), as member barriers do; parent and
 * children are kept as world ranks either way, so the rest is the same.
 * Every broadcast sends, along each tree edge:
 *   1. one header message of at most MPII_TREE_HEADER_BYTES:
 *        [0..8)    magic "MPIITB01"
 *        [8..16)   total length, uint64, host byte order (one build everywhere)
 *        [16..24)  chunk size the root chose, uint64
 *        [24..)    the first min(length, TREE_INLINE) bytes of the message
 *      so a message that fits inline costs one message per edge, and a small
 *      one is a small message (the receiver posts the full size and checks
 *      that exactly prefix + inline part arrived);
 *   2. the rest, cut into chunks, pipelined: a receiver keeps up to
 *      TREE_WINDOW chunk receives posted, and as soon as chunk k has arrived
 *      forwards it to each child (up to TREE_WINDOW sends outstanding per
 *      child) while chunks k+1.. are still arriving. Chunks go straight from
 *      the root's buffer and into/out of the receiver's malloc'd buffer.
 * Tags (MPII_P2P_TAG_BITS = 40 bits) keep messages of different operations
 * apart, so any number of broadcasts can be pending at once and their
 * messages can arrive in any order:
 *   [39..37] kind: header, chunk, barrier up/down, member-barrier up/down
 *   broadcasts: [36..35] group (0: world broadcasts; 1..3: group broadcasts),
 *               [34..21] sequence number within the group (mod 2^14),
 *               [20..0]  chunk index
 *   barriers:   [36..0]  barrier sequence number
 * Every rank numbers each group's broadcasts (world broadcasts are group 0)
 * in the order it starts them, with one counter per group; transport.h
 * requires that order to be the same on every member. The group field keeps
 * the groups' messages apart, so their orders are independent. A chunk index
 * must fit in 21 bits, so for messages above 2^21 chunks the root raises the
 * chunk size and announces it in the header.
 *
 * Progress. bcast_start posts what it can (the header receive, or the root's
 * header sends). Every wait — for any broadcast, and barriers too — calls
 * p2p progress and then steps every pending broadcast and every background
 * barrier: tests the oldest outstanding receive and sends, posts the next
 * ones. A wait returns when its own broadcast is complete on this rank (its
 * data received and forwarded to all its children), or MPII_ERR_TIMEOUT with
 * everything left pending for a later wait. While something moves the loop
 * keeps polling; after TREE_SPIN_NS without movement it yields the CPU with
 * short sleeps, since runs are often oversubscribed.
 *
 * Background progress. Fabrics with manual progress (libfabric's tcp;ofi_rxm,
 * UCX) move data only while someone calls into them, and a root that starts a
 * broadcast and then blocks elsewhere — in MPI_Init under mpi4py's import,
 * say, which waits for every rank while those ranks wait for the root's
 * bytes — would deadlock the job. So the tree owns one thread that, whenever
 * operations are pending and no call of ours is running, steps them every
 * TREE_BG_POLL_NS; once nothing has been pending for TREE_BG_LINGER_S it
 * sleeps on a condition variable, and only then does new work signal it.
 * One mutex serialises everything (tree state and every p2p call), so the
 * p2p layer sees one caller at a time, though not always the same thread
 * (libfabric FI_THREAD_DOMAIN, UCX UCS_THREAD_MODE_SERIALIZED); a wait
 * releases it while it pauses.
 *
 * Barrier. A binomial tree over the member list (all ranks, or a node's):
 * zero-byte messages gather up to member 0 and the release goes back down.
 * A barrier that times out stays in the tree's list and keeps being stepped
 * by later calls, so the other ranks' barriers still complete; the next
 * barrier call of the same kind (world, or over members) resumes it instead
 * of starting another, so that a caller may wait in slices.
 *
 * Failure. A p2p error fails its broadcast (later waits on it return the same
 * error) without disturbing the others. Nothing here blocks without a bound.
 * destroy frees everything except memory still named by an outstanding p2p
 * operation, which it leaves allocated (see tree_bcast.h); it stops the
 * background thread first, so the p2p layer may be closed right after it.
 * Calls may come from any thread (they serialise on the mutex). Never prints. */
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpiimport/buffer.h"
#include "mpiimport/util.h"
#include "tree_bcast.h"

#define TREE_PREFIX 24u
#define TREE_INLINE ((size_t)MPII_TREE_HEADER_BYTES - TREE_PREFIX)
/* Chunk operations in flight per edge. */
#define TREE_WINDOW 8u
/* A binomial tree over at most INT_MAX ranks has at most 31 children. */
#define TREE_MAX_CHILDREN 32
/* Waiting: keep polling while things move, yield for this long after the
 * last movement, then sleep between polls. */
#define TREE_SPIN_NS 2000000L /* 2 ms */
#define TREE_SLEEP_NS 50000L  /* 50 us */
/* Background progress: poll interval while operations are pending, and how
 * long it keeps polling once nothing is (so that the next operation needs no
 * wake-up signal: waking a thread cost 30 us per 1 KiB broadcast). */
#define TREE_BG_POLL_NS 1000000L /* 1 ms */
#define TREE_BG_LINGER_S 0.2

/* Tag layout. */
#define TAG_KIND_SHIFT 37
#define TAG_GROUP_SHIFT 35
#define TAG_GROUP_MASK UINT64_C(0x3)
#define TAG_SEQ_SHIFT 21
#define TAG_SEQ_MASK ((UINT64_C(1) << (TAG_GROUP_SHIFT - TAG_SEQ_SHIFT)) - 1u)
/* Broadcast groups: 0 for world broadcasts, 1..TREE_GROUPS-1 for groups. */
#define TREE_GROUPS 4
#define TAG_CHUNK_LIMIT ((size_t)1 << TAG_SEQ_SHIFT)
#define TAG_BARRIER_SEQ_MASK ((UINT64_C(1) << TAG_KIND_SHIFT) - 1u)

enum tree_kind {
    KIND_HEADER = 0,
    KIND_CHUNK = 1,
    KIND_BARRIER_UP = 2,
    KIND_BARRIER_DOWN = 3,
    KIND_MEMBERS_UP = 4,
    KIND_MEMBERS_DOWN = 5
};

static const unsigned char tree_magic[8] = {'M', 'P', 'I', 'I', 'T', 'B', '0', '1'};

/* One child's share of a broadcast: its header send and chunk sends. */
struct tree_child {
    int rank;
    int header_posted;
    mpii_p2p_req *header;         /* outstanding header send, NULL when none */
    size_t posted;                /* chunks [done, posted) are in flight */
    size_t done;
    mpii_p2p_req *win[TREE_WINDOW]; /* chunk k's send in win[k % TREE_WINDOW] */
};

struct mpii_bcast_req {
    struct mpii_bcast_req *prev, *next; /* the tree's list of pending broadcasts */
    mpii_status error;                  /* sticky: the broadcast has failed */
    int group;                          /* 0: world broadcast */
    uint64_t seq;                       /* within its group */
    int root;
    int is_root;
    int parent;      /* world rank; -1 on the root */
    int have_header; /* the root always; receivers once it arrived */
    size_t len;
    size_t chunk;
    size_t nchunks;  /* chunks after the inline part */
    const unsigned char *src; /* root: the caller's buffer */
    unsigned char *data;      /* receivers: the message */
    mpii_p2p_req *header_recv;
    size_t recv_posted;       /* chunks [recv_done, recv_posted) are being received */
    size_t recv_done;
    mpii_p2p_req *recv_win[TREE_WINDOW];
    int nchildren;
    struct tree_child children[TREE_MAX_CHILDREN];
    size_t header_len;        /* bytes of header in use: prefix + inline part */
    unsigned char header[MPII_TREE_HEADER_BYTES];
};

struct tree_barrier {
    struct tree_barrier *prev, *next; /* the tree's list of barriers in progress */
    mpii_status error;
    int orphaned; /* its caller gave up on it (an error): free it once nothing is outstanding */
    int done;
    uint64_t tag_up, tag_down;
    int parent; /* world rank; -1 on member 0 */
    int nchildren;
    int children[TREE_MAX_CHILDREN];
    mpii_p2p_req *up_recv[TREE_MAX_CHILDREN];
    int ups; /* up messages received */
    int up_posted;
    mpii_p2p_req *up_send;
    mpii_p2p_req *down_recv;
    int released;
    int downs_posted;
    mpii_p2p_req *down_send[TREE_MAX_CHILDREN];
};

struct mpii_tree {
    const mpii_p2p_ops *ops;
    mpii_p2p *p2p;
    int rank;
    int size;
    size_t chunk;
    uint64_t bcast_seq[TREE_GROUPS]; /* per broadcast group; [0]: world broadcasts */
    uint64_t barrier_seq;
    uint64_t members_seq;
    mpii_status p2p_error; /* sticky failure of p2p progress itself */
    struct mpii_bcast_req *bcasts; /* oldest first */
    struct mpii_bcast_req *bcasts_tail;
    struct tree_barrier *barriers;
    struct tree_barrier *resume[2]; /* a timed-out barrier (world, members): the next call's */
    /* Serialisation and background progress. */
    pthread_mutex_t lock;
    pthread_cond_t wake;   /* new work, or stop */
    pthread_t thread;
    int thread_started;
    int stop;
    int waiting;           /* calls of ours inside a wait loop: they drive progress */
    int bg_asleep;         /* the background thread waits for a signal, not a timer */
};

/* ---- helpers ------------------------------------------------------------ */

static int wait_expired(double started, double timeout_s)
{
    return timeout_s >= 0.0 && mpii_monotonic_s() - started >= timeout_s;
}

/* One pause of a wait loop with no movement since last_move. */
static void wait_pause(double last_move)
{
    if ((mpii_monotonic_s() - last_move) * 1e9 < (double)TREE_SPIN_NS) {
        (void)sched_yield(); /* failure only means we did not yield */
        return;
    }
    struct timespec ts = {0, TREE_SLEEP_NS};
    (void)nanosleep(&ts, NULL); /* EINTR just shortens the pause */
}

/* wait_pause with the tree's lock released, so the background thread and
 * other callers are not shut out while this one sleeps. */
static void unlocked_pause(mpii_tree *t, double last_move)
{
    (void)pthread_mutex_unlock(&t->lock);
    wait_pause(last_move);
    (void)pthread_mutex_lock(&t->lock);
}

static uint64_t bcast_tag(enum tree_kind kind, const struct mpii_bcast_req *b,
                          size_t chunk_index)
{
    return ((uint64_t)kind << TAG_KIND_SHIFT) |
           (((uint64_t)b->group & TAG_GROUP_MASK) << TAG_GROUP_SHIFT) |
           ((b->seq & TAG_SEQ_MASK) << TAG_SEQ_SHIFT) | (uint64_t)chunk_index;
}

static uint64_t barrier_tag(enum tree_kind kind, uint64_t seq)
{
    return ((uint64_t)kind << TAG_KIND_SHIFT) | (seq & TAG_BARRIER_SEQ_MASK);
}

/* Binomial tree over positions 0..n-1 rooted at 0: the parent position of v
 * (-1 for 0) and its children, largest subtree first. */
static int tree_links(int v, int n, int children[TREE_MAX_CHILDREN], int *nchildren)
{
    unsigned long low;
    if (v == 0) {
        low = 1;
        while (low < (unsigned long)n)
            low <<= 1;
    } else {
        low = (unsigned long)v & (0ul - (unsigned long)v);
    }
    int k = 0;
    for (unsigned long m = low >> 1; m >= 1; m >>= 1)
        if ((unsigned long)v + m < (unsigned long)n && k < TREE_MAX_CHILDREN)
            children[k++] = v + (int)m;
    *nchildren = k;
    return v == 0 ? -1 : v - (int)low;
}

/* Tests *r; clears it when complete. *moved is set on completion, and then
 * *got (if not NULL) is the length the p2p layer reports. */
static mpii_status test_slot(mpii_tree *t, mpii_p2p_req **r, int *complete, int *moved,
                             size_t *got)
{
    *complete = 0;
    if (*r == NULL) {
        *complete = 1;
        return MPII_OK;
    }
    int done = 0;
    mpii_status st = t->ops->test(t->p2p, *r, &done, got);
    if (done) {
        *r = NULL;
        *complete = 1;
        *moved = 1;
    }
    return st;
}

/* ---- broadcast ---------------------------------------------------------- */

static size_t chunk_offset(const struct mpii_bcast_req *b, size_t k)
{
    return TREE_INLINE + k * b->chunk;
}

static size_t chunk_length(const struct mpii_bcast_req *b, size_t k)
{
    size_t off = chunk_offset(b, k);
    return b->len - off < b->chunk ? b->len - off : b->chunk;
}

/* The number of chunks after the inline part of a len-byte message. */
static size_t count_chunks(size_t len, size_t chunk)
{
    if (len <= TREE_INLINE)
        return 0;
    size_t rest = len - TREE_INLINE;
    return rest / chunk + (rest % chunk != 0);
}

/* Receiver: the header has arrived; learn length and chunk size, allocate
 * and copy the inline part. */
static mpii_status header_arrived(struct mpii_bcast_req *b)
{
    if (b->header_len < TREE_PREFIX || memcmp(b->header, tree_magic, sizeof tree_magic) != 0)
        return MPII_ERR_CORRUPT;
    uint64_t len64, chunk64;
    memcpy(&len64, b->header + 8, sizeof len64);
    memcpy(&chunk64, b->header + 16, sizeof chunk64);
    if (len64 > (uint64_t)SIZE_MAX || chunk64 == 0 || chunk64 > (uint64_t)SIZE_MAX)
        return MPII_ERR_CORRUPT;
    b->len = (size_t)len64;
    b->chunk = (size_t)chunk64;
    b->nchunks = count_chunks(b->len, b->chunk);
    if (b->nchunks > TAG_CHUNK_LIMIT)
        return MPII_ERR_CORRUPT;
    if (b->header_len != TREE_PREFIX + (b->len < TREE_INLINE ? b->len : TREE_INLINE))
        return MPII_ERR_CORRUPT; /* the inline part must be all there */
    if (b->len > 0) {
        b->data = mpii_buffer_alloc(b->len);
        if (b->data == NULL)
            return MPII_ERR_NOMEM;
        size_t inl = b->len < TREE_INLINE ? b->len : TREE_INLINE;
        memcpy(b->data, b->header + TREE_PREFIX, inl);
    }
    b->have_header = 1;
    return MPII_OK;
}

/* One pass over broadcast b: completes what has completed, posts what can be
 * posted. *moved is set when anything changed. */
static mpii_status bcast_step(mpii_tree *t, struct mpii_bcast_req *b, int *moved)
{
    mpii_status st;
    int complete = 0;
    if (!b->have_header) {
        if (b->header_recv == NULL) {
            st = t->ops->irecv(t->p2p, b->parent, bcast_tag(KIND_HEADER, b, 0), b->header,
                               MPII_TREE_HEADER_BYTES, &b->header_recv);
            if (st != MPII_OK) {
                b->header_recv = NULL;
                return st;
            }
        }
        if ((st = test_slot(t, &b->header_recv, &complete, moved, &b->header_len)) != MPII_OK)
            return st;
        if (!complete)
            return MPII_OK;
        if ((st = header_arrived(b)) != MPII_OK)
            return st;
    }

    /* Receive the chunks in order, TREE_WINDOW at a time. */
    const unsigned char *base = b->is_root ? b->src : b->data;
    for (int pass = 0; pass < 2 && !b->is_root; pass++) {
        while (b->recv_posted < b->nchunks && b->recv_posted - b->recv_done < TREE_WINDOW) {
            size_t k = b->recv_posted;
            mpii_p2p_req **slot = &b->recv_win[k % TREE_WINDOW];
            st = t->ops->irecv(t->p2p, b->parent, bcast_tag(KIND_CHUNK, b, k),
                               b->data + chunk_offset(b, k), chunk_length(b, k), slot);
            if (st != MPII_OK) {
                *slot = NULL;
                return st;
            }
            b->recv_posted++;
            *moved = 1;
        }
        while (b->recv_done < b->recv_posted) {
            size_t got = 0;
            st = test_slot(t, &b->recv_win[b->recv_done % TREE_WINDOW], &complete, moved, &got);
            if (st != MPII_OK)
                return st;
            if (!complete)
                break;
            if (got != chunk_length(b, b->recv_done))
                return MPII_ERR_CORRUPT; /* a chunk of the wrong size */
            b->recv_done++;
        }
    }

    /* Forward: the header, then every chunk that is here. */
    size_t avail = b->is_root ? b->nchunks : b->recv_done;
    for (int i = 0; i < b->nchildren; i++) {
        struct tree_child *c = &b->children[i];
        if (!c->header_posted) {
            st = t->ops->isend(t->p2p, c->rank, bcast_tag(KIND_HEADER, b, 0), b->header,
                               b->header_len, &c->header);
            if (st != MPII_OK) {
                c->header = NULL;
                return st;
            }
            c->header_posted = 1;
            *moved = 1;
        }
        if ((st = test_slot(t, &c->header, &complete, moved, NULL)) != MPII_OK)
            return st;
        for (int pass = 0; pass < 2; pass++) {
            while (c->posted < avail && c->posted - c->done < TREE_WINDOW) {
                size_t k = c->posted;
                mpii_p2p_req **slot = &c->win[k % TREE_WINDOW];
                st = t->ops->isend(t->p2p, c->rank, bcast_tag(KIND_CHUNK, b, k),
                                   base + chunk_offset(b, k), chunk_length(b, k), slot);
                if (st != MPII_OK) {
                    *slot = NULL;
                    return st;
                }
                c->posted++;
                *moved = 1;
            }
            while (c->done < c->posted) {
                st = test_slot(t, &c->win[c->done % TREE_WINDOW], &complete, moved, NULL);
                if (st != MPII_OK)
                    return st;
                if (!complete)
                    break;
                c->done++;
            }
        }
    }
    return MPII_OK;
}

static int bcast_complete(const struct mpii_bcast_req *b)
{
    if (!b->have_header || (!b->is_root && b->recv_done < b->nchunks))
        return 0;
    for (int i = 0; i < b->nchildren; i++) {
        const struct tree_child *c = &b->children[i];
        if (!c->header_posted || c->header != NULL || c->done < b->nchunks)
            return 0;
    }
    return 1;
}

/* Does a p2p operation still name b's memory? */
static int bcast_outstanding(const struct mpii_bcast_req *b)
{
    if (b->header_recv != NULL)
        return 1;
    for (size_t k = 0; k < TREE_WINDOW; k++)
        if (b->recv_win[k] != NULL)
            return 1;
    for (int i = 0; i < b->nchildren; i++) {
        const struct tree_child *c = &b->children[i];
        if (c->header != NULL)
            return 1;
        for (size_t k = 0; k < TREE_WINDOW; k++)
            if (c->win[k] != NULL)
                return 1;
    }
    return 0;
}

static void bcast_unlink(mpii_tree *t, struct mpii_bcast_req *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        t->bcasts = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    else
        t->bcasts_tail = b->prev;
    b->prev = b->next = NULL;
}

/* ---- barrier ------------------------------------------------------------ */

static mpii_status barrier_step(mpii_tree *t, struct tree_barrier *br, int *moved)
{
    mpii_status st;
    int complete = 0;
    for (int i = 0; i < br->nchildren; i++) {
        if (br->up_recv[i] == NULL)
            continue;
        if ((st = test_slot(t, &br->up_recv[i], &complete, moved, NULL)) != MPII_OK)
            return st;
        if (complete)
            br->ups++;
    }
    if (br->ups < br->nchildren)
        return MPII_OK;
    if (br->parent >= 0) {
        if (!br->up_posted) {
            st = t->ops->isend(t->p2p, br->parent, br->tag_up, NULL, 0, &br->up_send);
            if (st != MPII_OK) {
                br->up_send = NULL;
                return st;
            }
            br->up_posted = 1;
            *moved = 1;
        }
        if ((st = test_slot(t, &br->up_send, &complete, moved, NULL)) != MPII_OK)
            return st;
        if (!br->released) {
            if ((st = test_slot(t, &br->down_recv, &complete, moved, NULL)) != MPII_OK)
                return st;
            br->released = complete;
        }
    } else {
        br->released = 1;
    }
    if (!br->released)
        return MPII_OK;
    if (!br->downs_posted) {
        for (int i = 0; i < br->nchildren; i++) {
            st = t->ops->isend(t->p2p, br->children[i], br->tag_down, NULL, 0,
                               &br->down_send[i]);
            if (st != MPII_OK) {
                br->down_send[i] = NULL;
                return st;
            }
        }
        br->downs_posted = 1;
        *moved = 1;
    }
    int all = br->up_send == NULL;
    for (int i = 0; i < br->nchildren; i++) {
        if ((st = test_slot(t, &br->down_send[i], &complete, moved, NULL)) != MPII_OK)
            return st;
        all = all && complete;
    }
    br->done = all;
    return MPII_OK;
}

static int barrier_outstanding(const struct tree_barrier *br)
{
    if (br->up_send != NULL || br->down_recv != NULL)
        return 1;
    for (int i = 0; i < br->nchildren; i++)
        if (br->up_recv[i] != NULL || br->down_send[i] != NULL)
            return 1;
    return 0;
}

static void barrier_unlink(mpii_tree *t, struct tree_barrier *br)
{
    if (br->prev != NULL)
        br->prev->next = br->next;
    else
        t->barriers = br->next;
    if (br->next != NULL)
        br->next->prev = br->prev;
    br->prev = br->next = NULL;
}

/* ---- progress ----------------------------------------------------------- */

/* One pass over everything pending: p2p progress, then every broadcast and
 * every barrier. Errors are recorded on the operation they belong to; only
 * a failure of p2p progress itself is returned. Background barriers that
 * have finished (or failed with nothing outstanding) are freed. */
static mpii_status progress_all(mpii_tree *t, int *moved)
{
    if (t->p2p_error != MPII_OK)
        return t->p2p_error;
    mpii_status st = t->ops->progress(t->p2p);
    if (st != MPII_OK) {
        t->p2p_error = st;
        return st;
    }
    for (struct mpii_bcast_req *b = t->bcasts; b != NULL; b = b->next) {
        if (b->error != MPII_OK || bcast_complete(b))
            continue;
        st = bcast_step(t, b, moved);
        if (st != MPII_OK)
            b->error = st;
    }
    struct tree_barrier *next = NULL;
    for (struct tree_barrier *br = t->barriers; br != NULL; br = next) {
        next = br->next;
        if (br->error == MPII_OK && !br->done) {
            st = barrier_step(t, br, moved);
            if (st != MPII_OK)
                br->error = st;
        }
        if (br->orphaned && (br->done || (br->error != MPII_OK && !barrier_outstanding(br)))) {
            barrier_unlink(t, br);
            free(br);
        }
    }
    return MPII_OK;
}

/* Is there anything for the background thread to drive? */
static int has_work(const mpii_tree *t)
{
    if (t->p2p_error != MPII_OK)
        return 0;
    for (const struct mpii_bcast_req *b = t->bcasts; b != NULL; b = b->next)
        if (b->error == MPII_OK && !bcast_complete(b))
            return 1;
    for (const struct tree_barrier *br = t->barriers; br != NULL; br = br->next)
        if (br->error == MPII_OK && !br->done)
            return 1;
    return 0;
}

/* Absolute CLOCK_MONOTONIC time ns from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(long ns)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        ts.tv_sec = 0;
        ts.tv_nsec = 0;
    }
    ts.tv_nsec += ns;
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_nsec -= 1000000000L;
        ts.tv_sec++;
    }
    return ts;
}

/* The background progress thread: see the header comment. */
static void *background_progress(void *arg)
{
    mpii_tree *t = arg;
    double idle_since = -1.0;
    (void)pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        if (!has_work(t)) {
            double now = mpii_monotonic_s();
            if (idle_since < 0.0)
                idle_since = now;
            if (now - idle_since >= TREE_BG_LINGER_S) {
                /* Woken by new work or stop; a spurious wakeup just loops. */
                t->bg_asleep = 1;
                (void)pthread_cond_wait(&t->wake, &t->lock);
                t->bg_asleep = 0;
                idle_since = -1.0;
                continue;
            }
        } else {
            idle_since = -1.0;
            if (t->waiting == 0) {
                int moved = 0;
                (void)progress_all(t, &moved); /* errors stay on their operations */
            }
        }
        struct timespec until = deadline_in(TREE_BG_POLL_NS);
        (void)pthread_cond_timedwait(&t->wake, &t->lock, &until); /* timeout is the normal way out */
    }
    (void)pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* ---- public ------------------------------------------------------------- */

mpii_status mpii_tree_create(const mpii_p2p_ops *ops, mpii_p2p *p2p, int rank, int size,
                             size_t chunk, mpii_tree **out)
{
    if (out == NULL)
        return MPII_ERR_INVALID;
    *out = NULL;
    if (ops == NULL || ops->isend == NULL || ops->irecv == NULL || ops->test == NULL ||
        ops->progress == NULL || p2p == NULL || size < 1 || rank < 0 || rank >= size)
        return MPII_ERR_INVALID;
    mpii_tree *t = calloc(1, sizeof *t);
    if (t == NULL)
        return MPII_ERR_NOMEM;
    t->ops = ops;
    t->p2p = p2p;
    t->rank = rank;
    t->size = size;
    if (chunk == 0)
        chunk = MPII_TREE_DEFAULT_CHUNK;
    t->chunk = chunk < MPII_TREE_MIN_CHUNK ? MPII_TREE_MIN_CHUNK : chunk;
    t->p2p_error = MPII_OK;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return MPII_ERR_NOMEM;
    }
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (rc == 0)
            rc = pthread_cond_init(&t->wake, &ca);
        (void)pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        (void)pthread_mutex_destroy(&t->lock);
        free(t);
        return MPII_ERR_NOMEM;
    }
    if (pthread_create(&t->thread, NULL, background_progress, t) != 0) {
        (void)pthread_cond_destroy(&t->wake);
        (void)pthread_mutex_destroy(&t->lock);
        free(t);
        return MPII_ERR_NOMEM;
    }
    t->thread_started = 1;
    *out = t;
    return MPII_OK;
}

void mpii_tree_destroy(mpii_tree *t)
{
    if (t == NULL)
        return;
    if (t->thread_started) {
        (void)pthread_mutex_lock(&t->lock);
        t->stop = 1;
        (void)pthread_cond_signal(&t->wake);
        (void)pthread_mutex_unlock(&t->lock);
        (void)pthread_join(t->thread, NULL); /* cannot fail for a joinable thread of ours */
    }
    (void)pthread_cond_destroy(&t->wake);
    (void)pthread_mutex_destroy(&t->lock);
    /* Whatever a p2p operation may still touch is left allocated. */
    struct mpii_bcast_req *b = t->bcasts, *bn = NULL;
    for (; b != NULL; b = bn) {
        bn = b->next;
        if (!bcast_outstanding(b)) {
            free(b->data);
            free(b);
        }
    }
    struct tree_barrier *br = t->barriers, *brn = NULL;
    for (; br != NULL; br = brn) {
        brn = br->next;
        if (!barrier_outstanding(br))
            free(br);
    }
    free(t);
}

/* Starts a broadcast of group (0: a world broadcast from root, members NULL;
 * 1..TREE_GROUPS-1: over members[0..count), rooted at members[0], root
 * ignored). */
static mpii_status bcast_start_locked(mpii_tree *t, int group, const int *members, int count,
                                      int root, const void *buf, size_t len,
                                      mpii_bcast_req **out)
{
    int me = -1; /* this rank's position in the tree's numbering */
    if (members == NULL) {
        if (group != 0 || root < 0 || root >= t->size)
            return MPII_ERR_INVALID;
        count = t->size;
        me = (t->rank - root + t->size) % t->size;
    } else {
        if (group < 1 || group >= TREE_GROUPS || count < 1 || count > t->size)
            return MPII_ERR_INVALID;
        for (int i = 0; i < count; i++) {
            if (members[i] < 0 || members[i] >= t->size)
                return MPII_ERR_INVALID;
            if (me < 0 && members[i] == t->rank)
                me = i;
        }
        if (me < 0)
            return MPII_ERR_INVALID; /* not a member */
        root = members[0];
    }
    int is_root = root == t->rank;
    if (is_root && len > 0 && buf == NULL)
        return MPII_ERR_INVALID;
    /* Not calloc'd as a whole: the header block needs no zeroing on receivers. */
    struct mpii_bcast_req *b = malloc(sizeof *b);
    if (b == NULL)
        return MPII_ERR_NOMEM;
    memset(b, 0, offsetof(struct mpii_bcast_req, header));
    b->error = MPII_OK;
    b->group = group;
    b->seq = t->bcast_seq[group]++;
    b->root = root;
    b->is_root = is_root;
    /* Positions to world ranks: relative to the root, or through members. */
    int kids[TREE_MAX_CHILDREN];
    int pv = tree_links(me, count, kids, &b->nchildren);
    if (members == NULL) {
        b->parent = pv < 0 ? -1 : (pv + root) % t->size;
        for (int i = 0; i < b->nchildren; i++)
            b->children[i].rank = (kids[i] + root) % t->size;
    } else {
        b->parent = pv < 0 ? -1 : members[pv];
        for (int i = 0; i < b->nchildren; i++)
            b->children[i].rank = members[kids[i]];
    }
    if (is_root) {
        b->have_header = 1;
        b->src = buf;
        b->len = len;
        b->chunk = t->chunk;
        size_t rest = len > TREE_INLINE ? len - TREE_INLINE : 0;
        if (rest / b->chunk >= TAG_CHUNK_LIMIT) /* too many chunks for the tag */
            b->chunk = rest / TAG_CHUNK_LIMIT + 1;
        b->nchunks = count_chunks(len, b->chunk);
        uint64_t len64 = (uint64_t)len, chunk64 = (uint64_t)b->chunk;
        size_t inl = len < TREE_INLINE ? len : TREE_INLINE;
        memcpy(b->header, tree_magic, sizeof tree_magic);
        memcpy(b->header + 8, &len64, sizeof len64);
        memcpy(b->header + 16, &chunk64, sizeof chunk64);
        if (inl > 0)
            memcpy(b->header + TREE_PREFIX, buf, inl);
        b->header_len = TREE_PREFIX + inl; /* only this much goes on the wire */
    }
    b->prev = t->bcasts_tail;
    if (t->bcasts_tail != NULL)
        t->bcasts_tail->next = b;
    else
        t->bcasts = b;
    t->bcasts_tail = b;
    /* Post what can be posted now; a failure is the broadcast's, reported by
     * its wait, so the request is handed out regardless. */
    int moved = 0;
    mpii_status st = bcast_step(t, b, &moved);
    if (st != MPII_OK)
        b->error = st;
    *out = b;
    return MPII_OK;
}

mpii_status mpii_tree_bcast_start(mpii_tree *t, int root, const void *buf, size_t len,
                                  mpii_bcast_req **out)
{
    if (t == NULL || out == NULL)
        return MPII_ERR_INVALID;
    *out = NULL;
    (void)pthread_mutex_lock(&t->lock);
    mpii_status st = bcast_start_locked(t, 0, NULL, 0, root, buf, len, out);
    if (st == MPII_OK && t->bg_asleep)
        (void)pthread_cond_signal(&t->wake); /* new work for the background thread */
    (void)pthread_mutex_unlock(&t->lock);
    return st;
}

mpii_status mpii_tree_group_bcast_start(mpii_tree *t, int group, const int *members, int count,
                                        const void *buf, size_t len, mpii_bcast_req **out)
{
    if (t == NULL || out == NULL)
        return MPII_ERR_INVALID;
    *out = NULL;
    if (members == NULL || group < 1 || group >= TREE_GROUPS)
        return MPII_ERR_INVALID;
    (void)pthread_mutex_lock(&t->lock);
    mpii_status st = bcast_start_locked(t, group, members, count, -1, buf, len, out);
    if (st == MPII_OK && t->bg_asleep)
        (void)pthread_cond_signal(&t->wake); /* new work for the background thread */
    (void)pthread_mutex_unlock(&t->lock);
    return st;
}

static mpii_status bcast_wait_locked(mpii_tree *t, mpii_bcast_req *b, double timeout_s,
                                     void **buf, size_t *len)
{
    double started = mpii_monotonic_s(), last_move = started;
    for (;;) {
        int moved = 0;
        mpii_status st = progress_all(t, &moved);
        if (st != MPII_OK)
            return st;
        if (b->error != MPII_OK)
            return b->error;
        if (bcast_complete(b))
            break;
        if (wait_expired(started, timeout_s))
            return MPII_ERR_TIMEOUT;
        if (moved)
            last_move = mpii_monotonic_s();
        else
            unlocked_pause(t, last_move);
    }
    bcast_unlink(t, b);
    if (len != NULL)
        *len = b->len;
    if (buf != NULL) {
        *buf = b->data; /* NULL on the root and for empty messages */
        b->data = NULL;
    }
    free(b->data);
    free(b);
    return MPII_OK;
}

mpii_status mpii_tree_bcast_wait(mpii_tree *t, mpii_bcast_req *b, double timeout_s, void **buf,
                                 size_t *len)
{
    if (t == NULL || b == NULL)
        return MPII_ERR_INVALID;
    (void)pthread_mutex_lock(&t->lock);
    t->waiting++;
    mpii_status st = bcast_wait_locked(t, b, timeout_s, buf, len);
    t->waiting--;
    (void)pthread_mutex_unlock(&t->lock);
    return st;
}

static mpii_status barrier_wait_locked(mpii_tree *t, struct tree_barrier *br, int kind,
                                       double timeout_s);

static mpii_status barrier_locked(mpii_tree *t, const int *members, int count, double timeout_s)
{
    int kind = members != NULL;
    struct tree_barrier *br = t->resume[kind];
    t->resume[kind] = NULL;
    if (br != NULL)
        return barrier_wait_locked(t, br, kind, timeout_s);
    int me = -1;
    if (members == NULL) {
        count = t->size;
        me = t->rank;
    } else {
        if (count < 1 || count > t->size)
            return MPII_ERR_INVALID;
        for (int i = 0; i < count; i++) {
            if (members[i] < 0 || members[i] >= t->size)
                return MPII_ERR_INVALID;
            if (members[i] == t->rank)
                me = i;
        }
        if (me < 0)
            return MPII_ERR_INVALID;
    }
    br = calloc(1, sizeof *br);
    if (br == NULL)
        return MPII_ERR_NOMEM;
    br->error = MPII_OK;
    uint64_t seq = members == NULL ? t->barrier_seq++ : t->members_seq++;
    br->tag_up = barrier_tag(members == NULL ? KIND_BARRIER_UP : KIND_MEMBERS_UP, seq);
    br->tag_down = barrier_tag(members == NULL ? KIND_BARRIER_DOWN : KIND_MEMBERS_DOWN, seq);
    int kids[TREE_MAX_CHILDREN];
    int pv = tree_links(me, count, kids, &br->nchildren);
    br->parent = pv < 0 ? -1 : (members == NULL ? pv : members[pv]);
    for (int i = 0; i < br->nchildren; i++)
        br->children[i] = members == NULL ? kids[i] : members[kids[i]];
    br->next = t->barriers;
    if (t->barriers != NULL)
        t->barriers->prev = br;
    t->barriers = br;

    /* Post every receive at once: ups from the children, the release from
     * the parent. */
    mpii_status st = MPII_OK;
    for (int i = 0; i < br->nchildren && st == MPII_OK; i++) {
        st = t->ops->irecv(t->p2p, br->children[i], br->tag_up, NULL, 0, &br->up_recv[i]);
        if (st != MPII_OK)
            br->up_recv[i] = NULL;
    }
    if (st == MPII_OK && br->parent >= 0) {
        st = t->ops->irecv(t->p2p, br->parent, br->tag_down, NULL, 0, &br->down_recv);
        if (st != MPII_OK)
            br->down_recv = NULL;
    }
    if (st != MPII_OK)
        br->error = st;
    return barrier_wait_locked(t, br, kind, timeout_s);
}

/* Waits for a barrier of the list; one that times out is kept for the next
 * call of its kind (t->resume). */
static mpii_status barrier_wait_locked(mpii_tree *t, struct tree_barrier *br, int kind, double timeout_s)
{
    mpii_status st;
    double started = mpii_monotonic_s(), last_move = started;
    for (;;) {
        int moved = 0;
        if (br->error == MPII_OK) {
            st = progress_all(t, &moved);
            if (st != MPII_OK)
                br->error = st;
        }
        if (br->error != MPII_OK) {
            st = br->error;
            /* Keep it (orphaned) while the p2p layer may still touch it. */
            br->orphaned = 1;
            if (!barrier_outstanding(br)) {
                barrier_unlink(t, br);
                free(br);
            }
            return st;
        }
        if (br->done) {
            barrier_unlink(t, br);
            free(br);
            return MPII_OK;
        }
        if (wait_expired(started, timeout_s)) {
            t->resume[kind] = br; /* stepped in the background; the next call resumes it */
            return MPII_ERR_TIMEOUT;
        }
        if (moved)
            last_move = mpii_monotonic_s();
        else
            unlocked_pause(t, last_move);
    }
}

mpii_status mpii_tree_barrier(mpii_tree *t, const int *members, int count, double timeout_s)
{
    if (t == NULL)
        return MPII_ERR_INVALID;
    (void)pthread_mutex_lock(&t->lock);
    t->waiting++;
    mpii_status st = barrier_locked(t, members, count, timeout_s);
    t->waiting--;
    /* A barrier left running (timed out) is work for the background thread. */
    if (t->bg_asleep)
        (void)pthread_cond_signal(&t->wake);
    (void)pthread_mutex_unlock(&t->lock);
    return st;
}
