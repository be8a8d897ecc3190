/* test_bcast.c — multi-rank test of a transport's broadcast, barriers and node
 * grouping. Run as `mpirun -n P test_bcast <transport>`, for any transport.
 *
 * The test initialises MPI itself (before the transport's init, so the mpi
 * transport borrows it, and the fabric transports run beside it) and
 * finalises it after the transport's finalize. It uses MPI only to agree on
 * the verdict and to check rank and node grouping — never to help the
 * transport.
 *
 * Covered: byte-exact delivery for sizes around the transports' header blocks
 * (the mpi transport inlines 8176 bytes in an 8 KiB header, the tree of the
 * fabric transports 8168), around the fabric transports' default 1 MiB chunk
 * (chunk-1, chunk, chunk+1, inline+chunk+-1, 3 chunks+7), a few MiB, and 64 MiB,
 * all from every root; one message just past the mpi transport's 256 MiB
 * piece limit (from the middle rank); a third instance with a 64 KiB chunk
 * (MPIIMPORT_CHUNK, read by the fabric transports' init; the mpi transport
 * ignores it) for many-chunk pipelines; several broadcasts outstanding at once
 * (root starts three back to back; receivers one by one, or all three then
 * waits in reverse order, with mixed roots); timeouts that leave a broadcast
 * pending and resumable; node_info with real and simulated (ranks_per_node =
 * 2) nodes; barrier and node_barrier; group broadcasts (group_bcast_start,
 * skipped while a transport lacks it) with simulated and real nodes: LEADERS
 * from rank 0 to every leader, NODE from each leader to its node (payload
 * seeded by node id), sizes 0, 100, 9000 and 3 MiB, the two groups and a
 * world broadcast outstanding at once and started in different orders on
 * different ranks, and MPII_ERR_INVALID for a non-leader's LEADERS call and
 * for an unknown group.
 *
 * Every payload is a xorshift stream seeded by root, size and a tag, so a
 * message delivered to the wrong broadcast or shifted is detected. Exit code
 * 0 means every rank passed; a FAIL line names the rank and the case. */
#include <mpi.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpiimport/status.h"
#include "mpiimport/transport.h"

/* The mpi transport's inline capacity (header block 8192 minus a 16-byte
 * prefix) and the fabric transports' tree (8192 minus 24); every transport
 * simply gets the sizes around both tested. */
#define INLINE_GUESS 8176u
#define TREE_INLINE_GUESS 8168u
#define MIB ((size_t)1024u * 1024u)
/* The fabric transports' default pipeline chunk, and the small one of the
 * third instance. */
#define CHUNK MIB
#define SMALL_CHUNK ((size_t)64u * 1024u)
/* Generous per-wait bound so a lost message fails instead of hanging. */
#define WAIT_S 60.0

typedef struct test_ctx {
    const mpii_transport_ops *ops;
    mpii_transport *t;
    int rank;
    int size;
    long checks;
    long failures;
} test_ctx;

#define FAIL(c, ...)                                                                          \
    do {                                                                                      \
        fprintf(stderr, "FAIL test_bcast rank %d/%d: ", (c)->rank, (c)->size);                \
        fprintf(stderr, __VA_ARGS__);                                                         \
        fputc('\n', stderr);                                                                  \
        fflush(stderr);                                                                       \
        (c)->failures++;                                                                      \
    } while (0)

#define CHECK(c, cond, ...)                                                                   \
    do {                                                                                      \
        (c)->checks++;                                                                        \
        if (!(cond))                                                                          \
            FAIL(c, __VA_ARGS__);                                                             \
    } while (0)

/* A failure after which the ranks' collectives may no longer line up: report
 * and end the whole job rather than hang. */
static void fatal(test_ctx *c, const char *what, mpii_status st)
{
    FAIL(c, "%s returned %d (%s)", what, (int)st, mpii_strerror(st));
    MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3);
}

static double now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- payloads ----------------------------------------------------------- */

static uint64_t seed_of(int root, size_t len, unsigned tag)
{
    uint64_t z = 0x9E3779B97F4A7C15ull * ((uint64_t)root + 1) ^ ((uint64_t)len << 8) ^ tag;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; /* splitmix64 finaliser */
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z != 0 ? z : 1;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(unsigned char *buf, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = xorshift(&seed);
        memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* Offset of the first wrong byte, or len when all match. */
static size_t first_mismatch(const unsigned char *buf, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = xorshift(&seed);
        size_t n = len - i < 8 ? len - i : 8;
        if (memcmp(buf + i, &v, n) != 0) {
            const unsigned char *e = (const unsigned char *)&v;
            for (size_t k = 0; k < n; k++)
                if (buf[i + k] != e[k])
                    return i + k;
        }
    }
    return len;
}

static unsigned char *make_payload(test_ctx *c, size_t len, uint64_t seed)
{
    unsigned char *p = malloc(len > 0 ? len : 1);
    if (p == NULL)
        fatal(c, "malloc of the payload", MPII_ERR_NOMEM);
    fill(p, len, seed);
    return p;
}

/* Checks a received message against the expected one. */
static void check_received(test_ctx *c, const char *what, int root, void *buf, size_t got,
                           size_t want, uint64_t seed)
{
    CHECK(c, got == want, "%s root %d: length %zu, expected %zu", what, root, got, want);
    if (got != want)
        return;
    CHECK(c, (want == 0) == (buf == NULL), "%s root %d len %zu: buffer %p", what, root, want,
          buf);
    if (buf == NULL)
        return;
    size_t bad = first_mismatch(buf, want, seed);
    CHECK(c, bad == want, "%s root %d len %zu: first wrong byte at offset %zu", what, root,
          want, bad);
}

/* ---- cases -------------------------------------------------------------- */

static void check_barriers(test_ctx *c, mpii_transport *t);

/* One broadcast from root of len bytes, started and waited for at once. */
static void one_bcast(test_ctx *c, mpii_transport *t, int root, size_t len, unsigned tag)
{
    uint64_t seed = seed_of(root, len, tag);
    unsigned char *src = NULL;
    if (c->rank == root)
        src = make_payload(c, len, seed);
    mpii_bcast_req *req = NULL;
    char what[96];
    (void)snprintf(what, sizeof what, "bcast_start (tag %u, root %d, %zu bytes)", tag, root, len);
    mpii_status st = c->ops->bcast_start(t, root, src, len, &req);
    if (st != MPII_OK)
        fatal(c, what, st);
    void *buf = NULL;
    size_t got = 0;
    st = c->ops->bcast_wait(t, req, WAIT_S, &buf, &got);
    (void)snprintf(what, sizeof what, "bcast_wait (tag %u, root %d, %zu bytes)", tag, root, len);
    if (st != MPII_OK)
        fatal(c, what, st);
    if (c->rank != root)
        check_received(c, "bcast", root, buf, got, len, seed);
    else
        free(src);
    if (c->rank != root)
        free(buf);
}

static void test_sizes(test_ctx *c)
{
    const size_t small[] = {0,
                            1,
                            7,
                            TREE_INLINE_GUESS - 1,
                            TREE_INLINE_GUESS,
                            TREE_INLINE_GUESS + 1,
                            INLINE_GUESS - 1,
                            INLINE_GUESS,
                            INLINE_GUESS + 1,
                            8191,
                            8192,
                            8193,
                            3 * (size_t)INLINE_GUESS + 7,
                            CHUNK - 1,
                            CHUNK,
                            CHUNK + 1,
                            TREE_INLINE_GUESS + CHUNK - 1,
                            TREE_INLINE_GUESS + CHUNK,
                            TREE_INLINE_GUESS + CHUNK + 1,
                            3 * CHUNK + 7};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        for (int root = 0; root < c->size; root++)
            one_bcast(c, c->t, root, small[i], 1);
    for (int root = 0; root < c->size; root++)
        one_bcast(c, c->t, root, 64 * MIB, 1);
    /* Past the mpi transport's 256 MiB piece limit: header, one full piece
     * and a 7-byte last piece (about 2.3 GiB of memory at 8 ranks). */
    one_bcast(c, c->t, c->size / 2, 256 * MIB + INLINE_GUESS + 7, 1);
}

/* A third instance whose fabric transports use a 64 KiB chunk: chunk
 * boundaries again, and pipelines of hundreds of chunks from every root. */
static void test_small_chunk(test_ctx *c)
{
    if (setenv("MPIIMPORT_CHUNK", "65536", 1) != 0)
        fatal(c, "setenv MPIIMPORT_CHUNK", MPII_ERR_INVALID);
    char err[256] = "";
    mpii_transport_options opts = {0};
    mpii_transport *t3 = NULL;
    mpii_status st = c->ops->init(&opts, &t3, err, sizeof err);
    if (unsetenv("MPIIMPORT_CHUNK") != 0)
        fatal(c, "unsetenv MPIIMPORT_CHUNK", MPII_ERR_INVALID);
    if (st != MPII_OK) {
        FAIL(c, "init with MPIIMPORT_CHUNK=65536: %s (%s)", err, mpii_strerror(st));
        fatal(c, "init", st);
    }
    const size_t sizes[] = {0,
                            1,
                            SMALL_CHUNK - 1,
                            SMALL_CHUNK,
                            SMALL_CHUNK + 1,
                            TREE_INLINE_GUESS + SMALL_CHUNK - 1,
                            TREE_INLINE_GUESS + SMALL_CHUNK,
                            TREE_INLINE_GUESS + SMALL_CHUNK + 1,
                            3 * SMALL_CHUNK + 7,
                            TREE_INLINE_GUESS + 3 * SMALL_CHUNK,
                            16 * MIB + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int root = 0; root < c->size; root++)
            one_bcast(c, t3, root, sizes[i], 3);
    check_barriers(c, t3);
    c->ops->finalize(t3);
}

/* Three broadcasts outstanding at once. Mode 0: one root starts all three
 * before waiting; receivers start and wait one at a time. Mode 1: everybody
 * starts all three (roots vary) and then waits in reverse order. */
static void test_pipeline(test_ctx *c, int mode)
{
    const size_t lens[3] = {100, 3 * MIB + 1, INLINE_GUESS + 1};
    int roots[3];
    for (int k = 0; k < 3; k++)
        roots[k] = mode == 0 ? c->size - 1 : (k + 1) % c->size;
    unsigned char *src[3] = {NULL, NULL, NULL};
    mpii_bcast_req *req[3] = {NULL, NULL, NULL};
    void *buf[3] = {NULL, NULL, NULL};
    size_t got[3] = {0, 0, 0};
    uint64_t seed[3];
    for (int k = 0; k < 3; k++) {
        seed[k] = seed_of(roots[k], lens[k], 100u + (unsigned)k + 10u * (unsigned)mode);
        if (c->rank == roots[k])
            src[k] = make_payload(c, lens[k], seed[k]);
    }
    int all_at_once = mode == 1 || c->rank == roots[0];
    mpii_status st;
    if (all_at_once) {
        for (int k = 0; k < 3; k++)
            if ((st = c->ops->bcast_start(c->t, roots[k], src[k], lens[k], &req[k])) != MPII_OK)
                fatal(c, "bcast_start (pipeline)", st);
        for (int k = 2; k >= 0; k--)
            if ((st = c->ops->bcast_wait(c->t, req[k], WAIT_S, &buf[k], &got[k])) != MPII_OK)
                fatal(c, "bcast_wait (pipeline, reverse order)", st);
    } else {
        for (int k = 0; k < 3; k++) {
            if ((st = c->ops->bcast_start(c->t, roots[k], NULL, 0, &req[k])) != MPII_OK)
                fatal(c, "bcast_start (pipeline)", st);
            if ((st = c->ops->bcast_wait(c->t, req[k], WAIT_S, &buf[k], &got[k])) != MPII_OK)
                fatal(c, "bcast_wait (pipeline)", st);
        }
    }
    for (int k = 0; k < 3; k++) {
        if (c->rank != roots[k]) {
            char what[64];
            snprintf(what, sizeof what, "pipeline mode %d message %d", mode, k);
            check_received(c, what, roots[k], buf[k], got[k], lens[k], seed[k]);
            free(buf[k]);
        }
        free(src[k]);
    }
}

/* Receivers wait 0.2 s for a broadcast whose root starts it only after 1 s:
 * TIMEOUT, then a later wait completes it. Then a 16 MiB broadcast waited for
 * with timeout 0 until done, which times out at every stage (header pending,
 * remainder pending) and must resume each time. */
static void test_timeout(test_ctx *c)
{
    if (c->size < 2)
        return;
    const int root = 0;
    const size_t len = 20000; /* header plus a remainder */
    uint64_t seed = seed_of(root, len, 7);
    mpii_status st;
    if (c->rank == root) {
        sleep_s(1.0);
        unsigned char *src = make_payload(c, len, seed);
        mpii_bcast_req *req = NULL;
        if ((st = c->ops->bcast_start(c->t, root, src, len, &req)) != MPII_OK)
            fatal(c, "bcast_start (timeout)", st);
        if ((st = c->ops->bcast_wait(c->t, req, WAIT_S, NULL, NULL)) != MPII_OK)
            fatal(c, "bcast_wait (timeout, root)", st);
        free(src);
    } else {
        mpii_bcast_req *req = NULL;
        if ((st = c->ops->bcast_start(c->t, root, NULL, 0, &req)) != MPII_OK)
            fatal(c, "bcast_start (timeout)", st);
        void *buf = NULL;
        size_t got = 0;
        double t0 = now_s();
        st = c->ops->bcast_wait(c->t, req, 0.2, &buf, &got);
        double waited = now_s() - t0;
        CHECK(c, st == MPII_ERR_TIMEOUT, "timeout: first wait returned %d (%s), expected TIMEOUT",
              (int)st, mpii_strerror(st));
        CHECK(c, waited >= 0.19 && waited < 0.9, "timeout: first wait took %.3f s, expected 0.2",
              waited);
        if (st == MPII_ERR_TIMEOUT) {
            st = c->ops->bcast_wait(c->t, req, WAIT_S, &buf, &got);
            if (st != MPII_OK)
                fatal(c, "bcast_wait (after a timeout)", st);
        } else if (st != MPII_OK) {
            fatal(c, "bcast_wait (timeout)", st);
        }
        check_received(c, "timeout", root, buf, got, len, seed);
        free(buf);
    }

    /* Resume from every stage: poll with timeout 0. */
    const int root2 = c->size - 1;
    const size_t len2 = 16 * MIB + 3;
    uint64_t seed2 = seed_of(root2, len2, 8);
    unsigned char *src2 = c->rank == root2 ? make_payload(c, len2, seed2) : NULL;
    mpii_bcast_req *req2 = NULL;
    if ((st = c->ops->bcast_start(c->t, root2, src2, len2, &req2)) != MPII_OK)
        fatal(c, "bcast_start (poll)", st);
    void *buf2 = NULL;
    size_t got2 = 0;
    double t0 = now_s();
    while ((st = c->ops->bcast_wait(c->t, req2, 0.0, &buf2, &got2)) == MPII_ERR_TIMEOUT) {
        if (now_s() - t0 > WAIT_S)
            fatal(c, "bcast_wait (poll with timeout 0, never completed)", st);
    }
    if (st != MPII_OK)
        fatal(c, "bcast_wait (poll)", st);
    if (c->rank != root2) {
        check_received(c, "poll", root2, buf2, got2, len2, seed2);
        free(buf2);
    }
    free(src2);
}

static void check_node_info(test_ctx *c, mpii_transport *t, int ranks_per_node)
{
    mpii_node_info ni;
    memset(&ni, 0xff, sizeof ni);
    mpii_status st = c->ops->node_info(t, &ni);
    if (st != MPII_OK)
        fatal(c, "node_info", st);
    CHECK(c, ni.node_count >= 1 && ni.node_count <= c->size, "rpn %d: node_count %d",
          ranks_per_node, ni.node_count);
    CHECK(c, ni.node_id >= 0 && ni.node_id < ni.node_count, "rpn %d: node_id %d of %d",
          ranks_per_node, ni.node_id, ni.node_count);
    CHECK(c, ni.local_rank >= 0 && ni.local_rank < ni.local_size,
          "rpn %d: local_rank %d, local_size %d", ranks_per_node, ni.local_rank, ni.local_size);

    /* leaders' local sizes add up to the job; one leader per node; every rank
     * agrees on the node count; node ids of leaders are 0..node_count-1. */
    int mine[3] = {ni.local_rank == 0 ? ni.local_size : 0, ni.local_rank == 0 ? 1 : 0,
                   ni.local_rank == 0 ? ni.node_id : 0};
    int sums[3];
    int counts[2] = {ni.node_count, -ni.node_count};
    int extremes[2];
    if (MPI_Allreduce(mine, sums, 3, MPI_INT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Allreduce(counts, extremes, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        fatal(c, "MPI_Allreduce (node check)", MPII_ERR_TRANSPORT);
    CHECK(c, sums[0] == c->size, "rpn %d: leaders' local sizes add to %d, not %d",
          ranks_per_node, sums[0], c->size);
    CHECK(c, sums[1] == ni.node_count, "rpn %d: %d leaders for %d nodes", ranks_per_node,
          sums[1], ni.node_count);
    CHECK(c, extremes[0] == -extremes[1], "rpn %d: ranks disagree on node_count (%d..%d)",
          ranks_per_node, -extremes[1], extremes[0]);
    CHECK(c, sums[2] == ni.node_count * (ni.node_count - 1) / 2,
          "rpn %d: leaders' node ids add to %d, not 0+..+%d", ranks_per_node, sums[2],
          ni.node_count - 1);

    if (ranks_per_node > 0) {
        int id = c->rank / ranks_per_node;
        int first = id * ranks_per_node;
        int lsize = c->size - first < ranks_per_node ? c->size - first : ranks_per_node;
        CHECK(c, ni.node_id == id, "rpn %d: node_id %d, expected %d", ranks_per_node,
              ni.node_id, id);
        CHECK(c, ni.node_count == (c->size + ranks_per_node - 1) / ranks_per_node,
              "rpn %d: node_count %d", ranks_per_node, ni.node_count);
        CHECK(c, ni.local_rank == c->rank - first, "rpn %d: local_rank %d, expected %d",
              ranks_per_node, ni.local_rank, c->rank - first);
        CHECK(c, ni.local_size == lsize, "rpn %d: local_size %d, expected %d", ranks_per_node,
              ni.local_size, lsize);
    }
}

/* ---- group broadcasts ---------------------------------------------------- */

/* Starts a group broadcast; fatal unless it is accepted. */
static mpii_bcast_req *group_start(test_ctx *c, mpii_transport *t, int group, const void *src,
                                   size_t len, const char *what)
{
    mpii_bcast_req *req = NULL;
    mpii_status st = c->ops->group_bcast_start(t, group, src, len, &req);
    if (st != MPII_OK)
        fatal(c, what, st);
    return req;
}

/* Waits for a broadcast (world or group); receivers check the message. */
static void group_wait(test_ctx *c, mpii_transport *t, mpii_bcast_req *req, int is_root,
                       const char *what, int root, size_t len, uint64_t seed)
{
    void *buf = NULL;
    size_t got = 0;
    mpii_status st = c->ops->bcast_wait(t, req, WAIT_S, &buf, &got);
    if (st != MPII_OK)
        fatal(c, what, st);
    if (!is_root)
        check_received(c, what, root, buf, got, len, seed);
    free(buf);
}

/* group_bcast_start on t (nodes of ranks_per_node ranks, or real ones for 0):
 * LEADERS from rank 0 to every leader, NODE from every leader to its node,
 * then both groups and a world broadcast outstanding at once. */
static void test_group_bcast(test_ctx *c, mpii_transport *t, int ranks_per_node)
{
    if (c->ops->group_bcast_start == NULL) {
        if (c->rank == 0)
            printf("test_bcast: transport %s has no group_bcast_start: group cases skipped\n",
                   c->ops->name);
        return;
    }
    mpii_node_info ni;
    mpii_status st = c->ops->node_info(t, &ni);
    if (st != MPII_OK)
        fatal(c, "node_info (group bcast)", st);
    const int leader = ni.local_rank == 0;
    /* The node's root: its lowest world rank (asked of MPI, not the transport). */
    MPI_Comm node_comm = MPI_COMM_NULL;
    int node_root = -1;
    if (MPI_Comm_split(MPI_COMM_WORLD, ni.node_id, c->rank, &node_comm) != MPI_SUCCESS ||
        MPI_Allreduce(&c->rank, &node_root, 1, MPI_INT, MPI_MIN, node_comm) != MPI_SUCCESS ||
        MPI_Comm_free(&node_comm) != MPI_SUCCESS)
        fatal(c, "MPI_Comm_split/Allreduce (node root)", MPII_ERR_TRANSPORT);
    CHECK(c, leader == (c->rank == node_root),
          "rpn %d: local_rank %d, but node %d's lowest rank is %d", ranks_per_node,
          ni.local_rank, ni.node_id, node_root);
    if (ranks_per_node > 0)
        CHECK(c, node_root == ni.node_id * ranks_per_node, "rpn %d: node %d's leader is %d",
              ranks_per_node, ni.node_id, node_root);
    char what[128];

    /* Who may not take part is told so, and nothing starts. */
    mpii_bcast_req *req = NULL;
    unsigned char byte = 0x5a;
    if (!leader) {
        st = c->ops->group_bcast_start(t, MPII_GROUP_LEADERS, &byte, 1, &req);
        CHECK(c, st == MPII_ERR_INVALID,
              "rpn %d: LEADERS group_bcast_start on a non-leader returned %d (%s), expected "
              "INVALID",
              ranks_per_node, (int)st, mpii_strerror(st));
        if (st == MPII_OK)
            fatal(c, "group_bcast_start (LEADERS on a non-leader was accepted)", MPII_ERR_INVALID);
    }
    const int bad_groups[2] = {0, 3};
    for (int i = 0; i < 2; i++) {
        req = NULL;
        st = c->ops->group_bcast_start(t, bad_groups[i], &byte, 1, &req);
        CHECK(c, st == MPII_ERR_INVALID,
              "rpn %d: group_bcast_start of group %d returned %d (%s), expected INVALID",
              ranks_per_node, bad_groups[i], (int)st, mpii_strerror(st));
        if (st == MPII_OK)
            fatal(c, "group_bcast_start (an unknown group was accepted)", MPII_ERR_INVALID);
    }

    const size_t sizes[] = {0, 100, 9000, 3 * MIB};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    /* LEADERS: rank 0 to every leader; the other ranks sit it out. */
    if (leader) {
        CHECK(c, ni.node_id != 0 || c->rank == 0, "rpn %d: node 0's leader is rank %d",
              ranks_per_node, c->rank);
        for (size_t i = 0; i < nsizes; i++) {
            uint64_t seed = seed_of(0, sizes[i], 40);
            unsigned char *src = c->rank == 0 ? make_payload(c, sizes[i], seed) : NULL;
            (void)snprintf(what, sizeof what, "rpn %d LEADERS bcast of %zu bytes",
                           ranks_per_node, sizes[i]);
            req = group_start(c, t, MPII_GROUP_LEADERS, src, sizes[i], what);
            group_wait(c, t, req, c->rank == 0, what, 0, sizes[i], seed);
            free(src);
        }
    }
    /* NODE: each leader to its node, seeded by node id, so that a message
     * from another node's leader is detected. */
    for (size_t i = 0; i < nsizes; i++) {
        uint64_t seed = seed_of(ni.node_id, sizes[i], 41);
        unsigned char *src = leader ? make_payload(c, sizes[i], seed) : NULL;
        (void)snprintf(what, sizeof what, "rpn %d NODE bcast of %zu bytes on node %d",
                       ranks_per_node, sizes[i], ni.node_id);
        req = group_start(c, t, MPII_GROUP_NODE, src, sizes[i], what);
        group_wait(c, t, req, leader, what, node_root, sizes[i], seed);
        free(src);
    }

    /* Interleaved: a leader starts a LEADERS receive (rank 0: the send),
     * then a world broadcast, then its NODE send, and waits in reverse
     * order; the other ranks start the NODE receive before the world
     * broadcast. Only independent orders let all of them complete. */
    const size_t lead_len = 3 * MIB + 11, node_len = 9000, world_len = 20000;
    const int world_root = c->size - 1;
    uint64_t lead_seed = seed_of(0, lead_len, 42);
    uint64_t node_seed = seed_of(ni.node_id, node_len, 43);
    uint64_t world_seed = seed_of(world_root, world_len, 44);
    unsigned char *lead_src = c->rank == 0 ? make_payload(c, lead_len, lead_seed) : NULL;
    unsigned char *node_src = leader ? make_payload(c, node_len, node_seed) : NULL;
    unsigned char *world_src =
        c->rank == world_root ? make_payload(c, world_len, world_seed) : NULL;
    mpii_bcast_req *lead_req = NULL, *node_req = NULL, *world_req = NULL;
    (void)snprintf(what, sizeof what, "rpn %d interleaved LEADERS", ranks_per_node);
    if (leader)
        lead_req = group_start(c, t, MPII_GROUP_LEADERS, lead_src, lead_len, what);
    else
        node_req = group_start(c, t, MPII_GROUP_NODE, NULL, 0, "interleaved NODE");
    if ((st = c->ops->bcast_start(t, world_root, world_src, world_len, &world_req)) != MPII_OK)
        fatal(c, "bcast_start (interleaved with group broadcasts)", st);
    if (leader)
        node_req = group_start(c, t, MPII_GROUP_NODE, node_src, node_len, "interleaved NODE");
    (void)snprintf(what, sizeof what, "rpn %d interleaved NODE on node %d", ranks_per_node,
                   ni.node_id);
    group_wait(c, t, node_req, leader, what, node_root, node_len, node_seed);
    (void)snprintf(what, sizeof what, "rpn %d interleaved world", ranks_per_node);
    group_wait(c, t, world_req, c->rank == world_root, what, world_root, world_len, world_seed);
    if (leader) {
        (void)snprintf(what, sizeof what, "rpn %d interleaved LEADERS", ranks_per_node);
        group_wait(c, t, lead_req, c->rank == 0, what, 0, lead_len, lead_seed);
    }
    free(lead_src);
    free(node_src);
    free(world_src);
}

static void check_barriers(test_ctx *c, mpii_transport *t)
{
    mpii_status st = c->ops->barrier(t, WAIT_S);
    CHECK(c, st == MPII_OK, "barrier returned %d (%s)", (int)st, mpii_strerror(st));
    st = c->ops->node_barrier(t, WAIT_S);
    CHECK(c, st == MPII_OK, "node_barrier returned %d (%s)", (int)st, mpii_strerror(st));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TRANSPORT\n", argv[0]);
        return 2;
    }
    test_ctx c = {0};
    c.ops = mpii_transport_lookup(argv[1]);
    if (c.ops == NULL) {
        fprintf(stderr, "FAIL test_bcast: no transport named '%s' in this build\n", argv[1]);
        return 2;
    }
    /* MPI first, so the mpi transport borrows it and the fabric transports
     * are shown to coexist with it. */
    int mpi_up = 0, provided = 0;
    if (MPI_Initialized(&mpi_up) != MPI_SUCCESS) {
        fprintf(stderr, "FAIL test_bcast: MPI_Initialized failed\n");
        return 2;
    }
    if (!mpi_up && MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "FAIL test_bcast: MPI_Init_thread failed\n");
        return 2;
    }
    char err[256] = "";
    mpii_transport_options opts = {0};
    mpii_status st = c.ops->init(&opts, &c.t, err, sizeof err);
    if (st != MPII_OK) {
        fprintf(stderr, "FAIL test_bcast: init of '%s': %s (%s)\n", argv[1], err,
                mpii_strerror(st));
        MPI_Abort(MPI_COMM_WORLD, 2);
        return 2;
    }
    c.rank = c.ops->rank(c.t);
    c.size = c.ops->size(c.t);
    int world_rank = -1, world_size = -1;
    if (MPI_Comm_rank(MPI_COMM_WORLD, &world_rank) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &world_size) != MPI_SUCCESS)
        fatal(&c, "MPI_Comm_rank/size", MPII_ERR_TRANSPORT);
    CHECK(&c, c.rank == world_rank && c.size == world_size,
          "transport says rank %d of %d, MPI says %d of %d", c.rank, c.size, world_rank,
          world_size);
    double t0 = now_s();

    check_node_info(&c, c.t, 0);
    check_barriers(&c, c.t);

    /* A second instance on the same MPI, with simulated nodes of two ranks. */
    mpii_transport *t2 = NULL;
    opts.ranks_per_node = 2;
    st = c.ops->init(&opts, &t2, err, sizeof err);
    if (st != MPII_OK) {
        FAIL(&c, "init with ranks_per_node=2: %s (%s)", err, mpii_strerror(st));
        fatal(&c, "init", st);
    }
    check_node_info(&c, t2, 2);
    check_barriers(&c, t2);
    for (int root = 0; root < c.size; root++)
        one_bcast(&c, t2, root, INLINE_GUESS + 5, 2);
    test_group_bcast(&c, t2, 2);
    check_barriers(&c, t2);
    c.ops->finalize(t2);
    test_group_bcast(&c, c.t, 0);

    test_sizes(&c);
    test_small_chunk(&c);
    test_pipeline(&c, 0);
    test_pipeline(&c, 1);
    test_timeout(&c);
    check_barriers(&c, c.t);

    long mine[2] = {c.failures, c.checks}, total[2] = {0, 0};
    if (MPI_Allreduce(mine, total, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        fatal(&c, "MPI_Allreduce (verdict)", MPII_ERR_TRANSPORT);
    double elapsed = now_s() - t0;
    c.ops->finalize(c.t);
    if (!mpi_up && MPI_Finalize() != MPI_SUCCESS) {
        fprintf(stderr, "FAIL test_bcast rank %d: MPI_Finalize failed\n", c.rank);
        return 1;
    }

    if (total[0] != 0) {
        if (c.rank == 0)
            fprintf(stderr, "FAIL test_bcast transport=%s np=%d: %ld of %ld checks failed\n",
                    argv[1], c.size, total[0], total[1]);
        return 1;
    }
    if (c.rank == 0)
        printf("PASS test_bcast transport=%s np=%d: %ld checks in %.1f s\n", argv[1], c.size,
               total[1], elapsed);
    return 0;
}
