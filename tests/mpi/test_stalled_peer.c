/* test_stalled_peer.c — a peer that stops answering must not hang the others.
 *
 * The last rank stops itself (SIGSTOP) before taking part in a 64 MiB
 * broadcast. Every other rank's wait must return within its timeout plus a
 * bounded slack — done, or MPII_ERR_TIMEOUT with the broadcast still pending —
 * and at least one rank (the stopped rank's parent, or the root) must see the
 * timeout. Then rank 0 wakes the peer (SIGCONT) and every rank completes the
 * same broadcast with the right bytes: a timed-out broadcast resumes.
 * Run as `mpirun -n P test_stalled_peer <transport>`; with P = 1 it passes
 * trivially. MPI is used only to exchange pids and agree on the verdict. */
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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_stalled_peer <transport>\n");
        return 2;
    }
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return 2;
    const mpii_transport_ops *ops = mpii_transport_lookup(argv[1]);
    if (ops == NULL) {
        fprintf(stderr, "FAIL test_stalled_peer: transport %s not compiled\n", argv[1]);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    mpii_transport_options opts = {0};
    mpii_transport *t = NULL;
    char err[256] = "";
    if (ops->init(&opts, &t, err, sizeof err) != MPII_OK) {
        fprintf(stderr, "FAIL test_stalled_peer: init: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int rank = ops->rank(t), size = ops->size(t), fails = 0;
    if (size > 1) {
        pid_t *pids = malloc(sizeof(pid_t) * (size_t)size);
        pid_t me = getpid();
        MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, pids, (int)sizeof me, MPI_BYTE, MPI_COMM_WORLD);
        int victim = size - 1;
        /* the survivors' communicator, made while everyone still runs */
        MPI_Comm survivors;
        MPI_Comm_split(MPI_COMM_WORLD, rank == victim ? MPI_UNDEFINED : 0, rank, &survivors);
        uint8_t *payload = malloc(PAYLOAD);
        for (size_t i = 0; i < PAYLOAD; i++)
            payload[i] = (uint8_t)(i * 131u + 7u);
        if (rank == victim)
            raise(SIGSTOP); /* until rank 0 says otherwise */
        mpii_bcast_req *req = NULL;
        if (ops->bcast_start(t, 0, payload, PAYLOAD, &req) != MPII_OK) {
            fprintf(stderr, "FAIL rank %d: bcast_start\n", rank);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        void *buf = NULL;
        size_t len = 0;
        mpii_status st = MPII_OK;
        int timed_out = 0;
        if (rank != victim) {
            double t0 = now();
            st = ops->bcast_wait(t, req, TIMEOUT_S, &buf, &len);
            double took = now() - t0;
            if (st != MPII_OK && st != MPII_ERR_TIMEOUT) {
                fprintf(stderr, "FAIL rank %d: first wait returned %d\n", rank, (int)st);
                fails++;
            }
            if (took > TIMEOUT_S + SLACK_S) {
                fprintf(stderr, "FAIL rank %d: first wait took %.1f s (bound %.1f s)\n", rank, took,
                        TIMEOUT_S + SLACK_S);
                fails++;
            }
            timed_out = st == MPII_ERR_TIMEOUT;
        }
        /* everyone but the victim reports; then the victim is woken */
        int any_timeout = 0;
        if (rank != victim) {
            MPI_Allreduce(&timed_out, &any_timeout, 1, MPI_INT, MPI_MAX, survivors);
            MPI_Comm_free(&survivors);
            if (rank == 0 && !any_timeout) {
                fprintf(stderr, "FAIL: no rank noticed the stopped peer within %.1f s\n", TIMEOUT_S);
                fails++;
            }
            if (rank == 0 && kill(pids[victim], SIGCONT) != 0) {
                fprintf(stderr, "FAIL: cannot wake rank %d\n", victim);
                fails++;
            }
        }
        if (st == MPII_ERR_TIMEOUT || rank == victim) {
            st = ops->bcast_wait(t, req, 120.0, &buf, &len);
            if (st != MPII_OK) {
                fprintf(stderr, "FAIL rank %d: resumed wait returned %d\n", rank, (int)st);
                fails++;
            }
        }
        if (rank != 0 && st == MPII_OK && (len != PAYLOAD || memcmp(buf, payload, PAYLOAD) != 0)) {
            fprintf(stderr, "FAIL rank %d: wrong bytes after resuming\n", rank);
            fails++;
        }
        free(buf);
        free(payload);
        free(pids);
    }
    int total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    ops->finalize(t);
    if (rank == 0 && total == 0)
        printf("test_stalled_peer %s: OK at %d ranks\n", argv[1], size);
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
