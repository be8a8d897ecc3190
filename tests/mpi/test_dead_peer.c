/* test_dead_peer.c — a peer that dies mid-broadcast must not hang the others.
 *
 * Run as `mpirun --enable-recovery -n P test_dead_peer <transport>` (Open MPI
 * then keeps the survivors running when a rank dies). A victim rank — rank 2,
 * an inner node of the binomial tree from rank 0 when P >= 4 (rank 3 is its
 * child), or the last rank for P = 2, 3 — starts a 64 MiB broadcast from rank
 * 0 and kills itself before waiting for it (SIGKILL: no clean-up of any
 * kind). Every survivor's wait must then return within its timeout plus a
 * bounded slack: done (with the right bytes: ranks outside the victim's
 * subtree may legitimately finish), or an error (MPII_ERR_TIMEOUT or
 * MPII_ERR_TRANSPORT). With the fabric transports, whose tree layout is ours
 * (tree_bcast.c), the victim's parent and every rank below the victim must
 * see the error, since they cannot finish. (The mpi transport's tree is Open
 * MPI's own, whose single-copy path can even finish the victim's part inside
 * bcast_start, so there only the bounds are checked.) Then each survivor's
 * transport finalize must return within a bound too. MPI is used only on the
 * survivors' communicator (made before the death) to agree on the verdict.
 * With P = 1 it passes trivially.
 *
 * Verdict. Under --enable-recovery Open MPI's mpirun exits 0 whatever the
 * survivors return, so ctest judges by the output: rank 0 prints
 * "test_dead_peer <t>: OK" only when every survivor passed, and every failure
 * prints a line starting with FAIL.
 *
 * Not run for ucx: UCX 1.13 (Debian 12) aborts a survivor itself when a
 * node-local peer dies (a fatal error in its cma transport, or with cma
 * excluded an assertion in its endpoint-failure path); see README, Limits. */
#include <mpi.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/transport.h"

#define PAYLOAD ((size_t)64 << 20)
#define TIMEOUT_S 1.0
#define SLACK_S 10.0
#define FINALIZE_BOUND_S 20.0

static double now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Whether r lies in the subtree of v in the binomial tree rooted at 0
 * (tree_bcast.c's layout: the parent of r clears r's lowest set bit). */
static int in_subtree(int r, int v)
{
    while (r > v)
        r &= r - 1;
    return r == v;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_dead_peer <transport>\n");
        return 2;
    }
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return 2;
    const mpii_transport_ops *ops = mpii_transport_lookup(argv[1]);
    if (ops == NULL) {
        fprintf(stderr, "FAIL test_dead_peer: transport %s not compiled\n", argv[1]);
        MPI_Abort(MPI_COMM_WORLD, 2);
        return 2;
    }
    mpii_transport_options opts = {0};
    mpii_transport *t = NULL;
    char err[256] = "";
    if (ops->init(&opts, &t, err, sizeof err) != MPII_OK) {
        fprintf(stderr, "FAIL test_dead_peer: init: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 2);
        return 2;
    }
    int rank = ops->rank(t), size = ops->size(t);
    if (size == 1) {
        ops->finalize(t);
        printf("test_dead_peer %s: OK at 1 rank (nothing to kill)\n", argv[1]);
        MPI_Finalize();
        return 0;
    }
    int victim = size >= 4 ? 2 : size - 1;
    MPI_Comm survivors;
    if (MPI_Comm_split(MPI_COMM_WORLD, rank == victim ? MPI_UNDEFINED : 0, rank, &survivors) !=
        MPI_SUCCESS) {
        fprintf(stderr, "FAIL rank %d: MPI_Comm_split\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 2);
        return 2;
    }
    uint8_t *payload = malloc(PAYLOAD);
    if (payload == NULL) {
        fprintf(stderr, "FAIL rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 2);
        return 2;
    }
    for (size_t i = 0; i < PAYLOAD; i++)
        payload[i] = (uint8_t)(i * 131u + 7u);
    MPI_Barrier(MPI_COMM_WORLD);

    mpii_bcast_req *req = NULL;
    if (ops->bcast_start(t, 0, payload, PAYLOAD, &req) != MPII_OK) {
        fprintf(stderr, "FAIL rank %d: bcast_start\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    void *buf = NULL;
    size_t len = 0;
    if (rank == victim) {
        /* Die with the broadcast started (its receives posted) but before
         * waiting: a wait of even a few ms can finish 64 MiB in one call of
         * Open MPI's single-copy path, and then nobody would need the victim. */
        raise(SIGKILL);
        return 3; /* not reached */
    }
    int fails = 0;
    double t0 = now();
    mpii_status st = ops->bcast_wait(t, req, TIMEOUT_S, &buf, &len);
    double took = now() - t0;
    int our_tree = strcmp(argv[1], "mpi") != 0;
    int must_fail = our_tree && (rank == (victim & (victim - 1)) || in_subtree(rank, victim));
    if (st != MPII_OK && st != MPII_ERR_TIMEOUT && st != MPII_ERR_TRANSPORT) {
        fprintf(stderr, "FAIL rank %d: wait returned %d (%s)\n", rank, (int)st, mpii_strerror(st));
        fails++;
    }
    if (took > TIMEOUT_S + SLACK_S) {
        fprintf(stderr, "FAIL rank %d: wait took %.1f s (bound %.1f s)\n", rank, took,
                TIMEOUT_S + SLACK_S);
        fails++;
    }
    if (must_fail && st == MPII_OK) {
        fprintf(stderr, "FAIL rank %d: finished a broadcast that needs the dead rank %d\n", rank,
                victim);
        fails++;
    }
    if (st == MPII_OK && rank != 0 && (len != PAYLOAD || memcmp(buf, payload, PAYLOAD) != 0)) {
        fprintf(stderr, "FAIL rank %d: wrong bytes\n", rank);
        fails++;
    }
    printf("rank %d: wait returned %s after %.2f s%s\n", rank, mpii_strerror(st), took,
           must_fail ? " (needs the dead rank)" : "");
    fflush(stdout);
    free(buf);

    t0 = now();
    ops->finalize(t);
    took = now() - t0;
    if (took > FINALIZE_BOUND_S) {
        fprintf(stderr, "FAIL rank %d: finalize took %.1f s (bound %.1f s)\n", rank, took,
                FINALIZE_BOUND_S);
        fails++;
    }
    int total = 0, errored = st != MPII_OK, any_error = 0;
    if (MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, survivors) != MPI_SUCCESS ||
        MPI_Allreduce(&errored, &any_error, 1, MPI_INT, MPI_MAX, survivors) != MPI_SUCCESS)
        total = -1;
    if (rank == 0 && our_tree && !any_error) {
        fprintf(stderr, "FAIL: every survivor finished a broadcast that needs rank %d\n", victim);
        total++;
    }
    MPI_Comm_free(&survivors);
    if (rank == 0 && total == 0)
        printf("test_dead_peer %s: OK at %d ranks (rank %d killed)\n", argv[1], size, victim);
    free(payload);
    /* MPI_Finalize is collective over a world with a dead member; the verdict
     * is already agreed, so the survivors leave without it. */
    fflush(stdout);
    fflush(stderr);
    _exit(total == 0 ? 0 : 1);
}
