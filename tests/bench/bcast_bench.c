/* bcast_bench.c — micro-benchmark of the transports' broadcast against
 * MPI_Bcast and memcpy.
 *
 *   mpirun -n P bcast_bench [--sizes 1K,1M,64M,256M] [--iters N]
 *                           [--transports mpi,ofi,ucx] [--seconds S]
 *
 * For each transport (default: every compiled one except "self") and each
 * size, root 0 broadcasts the payload: a warm-up, then a timed batch of up
 * to N broadcasts, each one bcast_start on all ranks, bcast_wait on all
 * ranks (receivers free the buffer the transport malloc'd for them), then an
 * MPI_Barrier. The batch is preceded by an MPI_Barrier; each rank times it
 * with MPI_Wtime and the reported figure is the maximum over ranks of the
 * mean time per broadcast. The batch is time-bounded: the warm-up's time
 * (max over ranks; when the first call takes under a tenth of the budget,
 * the mean of three more, so that connection set-up does not count) decides
 * how many iterations fit into --seconds (default 2), at least 1 and at most
 * N, so large sizes run fewer iterations.
 *
 * MPI_Bcast of the same payload is timed the same way (into a buffer
 * allocated and touched beforehand; messages over INT_MAX bytes are sent in
 * pieces of 1 GiB). memcpy is one copy of the payload between two touched
 * buffers, mean of a few, measured on one rank at a time while the others
 * wait in MPI_Barrier (so it is the copy cost of an undisturbed rank, not
 * of P ranks copying at once on shared cores); the maximum over ranks is
 * reported.
 *
 * The program initialises MPI itself (before any transport, so the mpi
 * transport borrows it and the fabric transports run beside it), runs the
 * transports one after another (init, every size, finalize) and finalises
 * MPI last. Rank 0 prints one markdown table: size | MPI_Bcast ms | memcpy
 * ms | for each transport: ms, ratio to MPI_Bcast, ratio to memcpy; then the
 * number of timed iterations per cell. Exit code 0 on success; any failure
 * aborts the job with a message naming the rank and the step. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#endif
#include <mpi.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpiimport/status.h"
#include "mpiimport/transport.h"

#define MAX_SIZES 32
#define MAX_TRANSPORTS 16
/* MPI_Bcast piece for payloads over INT_MAX bytes. */
#define MPI_PIECE ((size_t)1 << 30)
/* Per-wait bound so that a lost message aborts instead of hanging. */
#define WAIT_S 600.0
/* memcpy: this many timed copies at most (fewer when they exceed the time
 * budget). */
#define MEMCPY_REPS 5

typedef struct bench {
    int rank;
    int size;
    size_t sizes[MAX_SIZES];
    char size_names[MAX_SIZES][32];
    int nsizes;
    const mpii_transport_ops *ops[MAX_TRANSPORTS];
    int ntransports;
    int iters;
    double seconds;
    /* Results (valid on rank 0): ms per broadcast, iterations timed. */
    double mpi_ms[MAX_SIZES];
    int mpi_n[MAX_SIZES];
    double memcpy_ms[MAX_SIZES];
    int memcpy_n[MAX_SIZES];
    double tr_ms[MAX_TRANSPORTS][MAX_SIZES];
    int tr_n[MAX_TRANSPORTS][MAX_SIZES];
    int tr_ok[MAX_TRANSPORTS]; /* 0: init failed on every rank */
    char tr_err[MAX_TRANSPORTS][256];
} bench;

static int g_rank = -1;

#if defined(__GNUC__)
#define PRINTF_LIKE __attribute__((format(printf, 1, 2)))
#else
#define PRINTF_LIKE
#endif

/* Aborts the job with a message naming this rank. */
static _Noreturn void die(const char *fmt, ...) PRINTF_LIKE;
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bcast_bench rank %d: ", g_rank);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    exit(3);
}

static void mpi_check(int rc, const char *what)
{
    if (rc != MPI_SUCCESS)
        die("%s failed (MPI error %d)", what, rc);
}

/* Argument errors: every rank parses, only rank 0 prints. */
static void say(const char *fmt, ...) PRINTF_LIKE;
static void say(const char *fmt, ...)
{
    if (g_rank != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("bcast_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: mpirun -n P %s [--sizes 1K,1M,64M,256M] [--iters N] "
            "[--transports mpi,ofi,ucx] [--seconds S]\n"
            "  sizes take K, M, G suffixes (powers of 1024); iters (default 50) is the most\n"
            "  timed broadcasts per cell, seconds (default 2) the time budget of a cell.\n",
            prog);
}

/* "64M" -> 67108864. Returns 0 on success. */
static int parse_size(const char *s, size_t *out)
{
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024ull, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024ull * 1024ull, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024ull * 1024ull, end++;
    if (*end == 'B' || *end == 'b' || *end == 'i')
        end++;
    if (*end != '\0' || v == 0 || v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static void size_name(size_t n, char *buf, size_t cap)
{
    const size_t G = (size_t)1 << 30, M = (size_t)1 << 20, K = (size_t)1 << 10;
    int rc;
    if (n % G == 0)
        rc = snprintf(buf, cap, "%zuG", n / G);
    else if (n % M == 0)
        rc = snprintf(buf, cap, "%zuM", n / M);
    else if (n % K == 0)
        rc = snprintf(buf, cap, "%zuK", n / K);
    else
        rc = snprintf(buf, cap, "%zu", n);
    if (rc < 0 || (size_t)rc >= cap)
        die("size name of %zu does not fit", n);
}

/* Splits a copy of a comma list; calls fn on each item. Returns 0 or -1. */
static int parse_list(const char *list, int (*fn)(bench *, const char *), bench *b)
{
    char *copy = strdup(list); /* argv itself stays intact (ps shows it) */
    if (copy == NULL) {
        say("out of memory\n");
        return -1;
    }
    char *save = NULL;
    int any = 0, rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (fn(b, tok) != 0) {
            rc = -1;
            break;
        }
        any = 1;
    }
    free(copy);
    return rc == 0 && any ? 0 : -1;
}

static int add_size(bench *b, const char *tok)
{
    if (b->nsizes >= MAX_SIZES) {
        say("at most %d sizes\n", MAX_SIZES);
        return -1;
    }
    if (parse_size(tok, &b->sizes[b->nsizes]) != 0) {
        say("bad size '%s'\n", tok);
        return -1;
    }
    size_name(b->sizes[b->nsizes], b->size_names[b->nsizes], sizeof b->size_names[0]);
    b->nsizes++;
    return 0;
}

static int add_transport(bench *b, const char *tok)
{
    if (b->ntransports >= MAX_TRANSPORTS) {
        say("at most %d transports\n", MAX_TRANSPORTS);
        return -1;
    }
    const mpii_transport_ops *ops = mpii_transport_lookup(tok);
    if (ops == NULL) {
        char names[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < mpii_transport_count(); i++) {
            int rc = snprintf(names + used, sizeof names - used, " %s",
                              mpii_transport_at(i)->name);
            if (rc < 0 || (size_t)rc >= sizeof names - used)
                break;
            used += (size_t)rc;
        }
        say("no transport named '%s' in this build (compiled:%s)\n", tok, names);
        return -1;
    }
    b->ops[b->ntransports++] = ops;
    return 0;
}

/* Returns 0, or -1 after a message (rank 0 only prints). */
static int parse_args(bench *b, int argc, char **argv)
{
    const char *size_list = "1K,1M,64M,256M", *tr_list = NULL;
    b->iters = 50;
    b->seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return -1;
        if (i + 1 >= argc) {
            say("%s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--sizes") == 0) {
            size_list = v;
        } else if (strcmp(a, "--transports") == 0) {
            tr_list = v;
        } else if (strcmp(a, "--iters") == 0) {
            char *end = NULL;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno != 0 || *end != '\0' || n < 1 || n > 1000000) {
                say("bad --iters '%s'\n", v);
                return -1;
            }
            b->iters = (int)n;
        } else if (strcmp(a, "--seconds") == 0) {
            char *end = NULL;
            errno = 0;
            double s = strtod(v, &end);
            if (errno != 0 || *end != '\0' || !(s > 0.0) || s > 3600.0) {
                say("bad --seconds '%s'\n", v);
                return -1;
            }
            b->seconds = s;
        } else {
            say("unknown option '%s'\n", a);
            return -1;
        }
    }
    if (parse_list(size_list, add_size, b) != 0)
        return -1;
    if (tr_list != NULL) {
        if (parse_list(tr_list, add_transport, b) != 0)
            return -1;
    } else {
        for (size_t i = 0; i < mpii_transport_count() && b->ntransports < MAX_TRANSPORTS; i++) {
            const mpii_transport_ops *ops = mpii_transport_at(i);
            if (ops != NULL && strcmp(ops->name, "self") != 0)
                b->ops[b->ntransports++] = ops;
        }
    }
    return 0;
}

/* ---- measurements ------------------------------------------------------- */

static double max_over_ranks(double v)
{
    double m = 0.0;
    mpi_check(MPI_Allreduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    return m;
}

/* How many timed iterations fit the budget, given one warm-up's max time.
 * Uses the max over ranks so every rank agrees. */
static int iterations_for(const bench *b, double warm_s)
{
    double w = max_over_ranks(warm_s);
    if (w <= 0.0)
        return b->iters;
    double n = b->seconds / w;
    if (n < 1.0)
        return 1;
    if (n > (double)b->iters)
        return b->iters;
    return (int)n;
}

static unsigned char *alloc_touched(size_t len, int byte)
{
    unsigned char *p = malloc(len);
    if (p == NULL)
        die("malloc of %zu bytes failed", len);
    memset(p, byte, len);
    return p;
}

/* One transport broadcast from root 0 followed by an MPI_Barrier. src is
 * the payload on root; receivers check the length and the end bytes. */
static void one_transport_bcast(const bench *b, const mpii_transport_ops *ops, mpii_transport *t,
                                const unsigned char *src, size_t len)
{
    mpii_bcast_req *req = NULL;
    mpii_status st = ops->bcast_start(t, 0, b->rank == 0 ? src : NULL, b->rank == 0 ? len : 0,
                                      &req);
    if (st != MPII_OK)
        die("%s bcast_start of %zu bytes: %s", ops->name, len, mpii_strerror(st));
    void *buf = NULL;
    size_t got = 0;
    st = ops->bcast_wait(t, req, WAIT_S, &buf, &got);
    if (st != MPII_OK)
        die("%s bcast_wait of %zu bytes: %s", ops->name, len, mpii_strerror(st));
    if (b->rank != 0) {
        const unsigned char *r = buf;
        if (got != len || r == NULL || r[0] != 0xA5 || r[len - 1] != 0xA5)
            die("%s delivered %zu bytes (expected %zu) or wrong content", ops->name, got, len);
        free(buf);
    }
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

static void one_mpi_bcast(unsigned char *buf, size_t len)
{
    for (size_t off = 0; off < len; off += MPI_PIECE) {
        size_t n = len - off < MPI_PIECE ? len - off : MPI_PIECE;
        mpi_check(MPI_Bcast(buf + off, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

/* Warm-up (one call, plus three more when it is fast), then the timed batch.
 * Returns the max over ranks of the mean seconds per call; *n_out gets the
 * batch length. kind 0: transport, 1: MPI_Bcast. */
static double time_cell(const bench *b, int kind, const mpii_transport_ops *ops,
                        mpii_transport *t, unsigned char *buf, size_t len, int *n_out)
{
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    double t0 = MPI_Wtime();
    if (kind == 0)
        one_transport_bcast(b, ops, t, buf, len);
    else
        one_mpi_bcast(buf, len);
    double warm = MPI_Wtime() - t0;
    if (max_over_ranks(warm) < b->seconds / 10.0) {
        /* Fast: three more warm-ups, whose mean (without the first call's
         * connection set-up) estimates the batch length better. */
        t0 = MPI_Wtime();
        for (int i = 0; i < 3; i++) {
            if (kind == 0)
                one_transport_bcast(b, ops, t, buf, len);
            else
                one_mpi_bcast(buf, len);
        }
        warm = (MPI_Wtime() - t0) / 3.0;
    }
    int n = iterations_for(b, warm);
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    t0 = MPI_Wtime();
    for (int i = 0; i < n; i++) {
        if (kind == 0)
            one_transport_bcast(b, ops, t, buf, len);
        else
            one_mpi_bcast(buf, len);
    }
    double mean = (MPI_Wtime() - t0) / (double)n;
    *n_out = n;
    return max_over_ranks(mean);
}

/* memcpy of len bytes, one rank at a time; max over ranks of the mean. */
static double time_memcpy(const bench *b, size_t len, int *n_out)
{
    double mine = 0.0;
    int mine_n = 0;
    for (int r = 0; r < b->size; r++) {
        if (r == b->rank) {
            unsigned char *src = alloc_touched(len, 0x5A);
            unsigned char *dst = alloc_touched(len, 0);
            memcpy(dst, src, len); /* warm-up */
            double total = 0.0;
            int n = 0;
            while (n < MEMCPY_REPS && (n == 0 || total < b->seconds / 4.0)) {
                double t0 = MPI_Wtime();
                memcpy(dst, src, len);
                total += MPI_Wtime() - t0;
                n++;
                /* Keep the copy from being optimised away or skipped. */
                if (dst[len - 1] != 0x5A)
                    die("memcpy check failed");
            }
            mine = total / (double)n;
            mine_n = n;
            free(src);
            free(dst);
        }
        mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    }
    int min_n = 0;
    mpi_check(MPI_Allreduce(&mine_n, &min_n, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
              "MPI_Allreduce");
    *n_out = min_n;
    return max_over_ranks(mine);
}

static void run_mpi_and_memcpy(bench *b)
{
    for (int s = 0; s < b->nsizes; s++) {
        size_t len = b->sizes[s];
        unsigned char *buf = alloc_touched(len, b->rank == 0 ? 0xA5 : 0);
        b->mpi_ms[s] = 1e3 * time_cell(b, 1, NULL, NULL, buf, len, &b->mpi_n[s]);
        free(buf);
        b->memcpy_ms[s] = 1e3 * time_memcpy(b, len, &b->memcpy_n[s]);
    }
}

static void run_transport(bench *b, int k)
{
    const mpii_transport_ops *ops = b->ops[k];
    char err[256] = "";
    mpii_transport_options opts = {0};
    mpii_transport *t = NULL;
    mpii_status st = ops->init(&opts, &t, err, sizeof err);
    int ok = st == MPII_OK, all_ok = 0, any_ok = 0;
    mpi_check(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
    mpi_check(MPI_Allreduce(&ok, &any_ok, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    if (!all_ok) {
        if (any_ok)
            die("init of '%s' failed on some ranks only (here: %s)", ops->name,
                ok ? "ok" : err);
        /* Failed everywhere: report it in the table and go on. */
        b->tr_ok[k] = 0;
        int rc = snprintf(b->tr_err[k], sizeof b->tr_err[k], "%s (%s)", err, mpii_strerror(st));
        if (rc < 0)
            b->tr_err[k][0] = '\0';
        if (b->rank == 0)
            say("init of '%s' failed: %s\n", ops->name, b->tr_err[k]);
        return;
    }
    b->tr_ok[k] = 1;
    if (ops->rank(t) != b->rank || ops->size(t) != b->size)
        die("%s says rank %d of %d, MPI says %d of %d", ops->name, ops->rank(t), ops->size(t),
            b->rank, b->size);
    for (int s = 0; s < b->nsizes; s++) {
        size_t len = b->sizes[s];
        unsigned char *src = b->rank == 0 ? alloc_touched(len, 0xA5) : NULL;
        b->tr_ms[k][s] = 1e3 * time_cell(b, 0, ops, t, src, len, &b->tr_n[k][s]);
        free(src);
    }
    st = ops->barrier(t, WAIT_S);
    if (st != MPII_OK)
        die("%s barrier before finalize: %s", ops->name, mpii_strerror(st));
    ops->finalize(t);
    mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

/* ---- report ------------------------------------------------------------- */

/* v with three significant digits, in fixed notation (at most 7 decimals). */
static const char *fmt3(double v, char *buf, size_t cap)
{
    int decimals = 2;
    for (double x = v < 0 ? -v : v; x > 0.0 && x < 1.0 && decimals < 7; x *= 10.0)
        decimals++;
    for (double x = v < 0 ? -v : v; x >= 10.0 && decimals > 0; x /= 10.0)
        decimals--;
    int rc = snprintf(buf, cap, "%.*f", decimals, v);
    if (rc < 0 || (size_t)rc >= cap)
        die("formatting %g failed", v);
    return buf;
}

static void print_table(const bench *b)
{
    char f1[64], f2[64], f3[64];
    char host[MPI_MAX_PROCESSOR_NAME] = "?";
    int hlen = 0;
    mpi_check(MPI_Get_processor_name(host, &hlen), "MPI_Get_processor_name");
    printf("### P = %d ranks (host %s)\n\n", b->size, host);
    printf("Max over ranks of the mean time per broadcast from root 0 (each broadcast "
           "followed by an MPI_Barrier); at most %d timed iterations per cell, bounded "
           "to about %.1f s. memcpy: one rank at a time, touched buffers.\n\n",
           b->iters, b->seconds);
    printf("| size | MPI_Bcast ms | memcpy ms |");
    for (int k = 0; k < b->ntransports; k++)
        printf(" %s ms | %s / MPI_Bcast | %s / memcpy |", b->ops[k]->name, b->ops[k]->name,
               b->ops[k]->name);
    printf("\n|---:|---:|---:|");
    for (int k = 0; k < b->ntransports; k++)
        printf("---:|---:|---:|");
    printf("\n");
    for (int s = 0; s < b->nsizes; s++) {
        printf("| %s | %s | %s |", b->size_names[s], fmt3(b->mpi_ms[s], f1, sizeof f1),
               fmt3(b->memcpy_ms[s], f2, sizeof f2));
        for (int k = 0; k < b->ntransports; k++) {
            if (!b->tr_ok[k]) {
                printf(" init failed | – | – |");
                continue;
            }
            double ms = b->tr_ms[k][s];
            printf(" %s | %s | %s |", fmt3(ms, f1, sizeof f1),
                   fmt3(b->mpi_ms[s] > 0 ? ms / b->mpi_ms[s] : 0.0, f2, sizeof f2),
                   fmt3(b->memcpy_ms[s] > 0 ? ms / b->memcpy_ms[s] : 0.0, f3, sizeof f3));
        }
        printf("\n");
    }
    printf("\nTimed iterations per cell:");
    for (int s = 0; s < b->nsizes; s++) {
        printf(" %s: MPI_Bcast %d, memcpy %d", b->size_names[s], b->mpi_n[s], b->memcpy_n[s]);
        for (int k = 0; k < b->ntransports; k++)
            if (b->tr_ok[k])
                printf(", %s %d", b->ops[k]->name, b->tr_n[k][s]);
        printf(s + 1 < b->nsizes ? ";" : ".\n");
    }
    for (int k = 0; k < b->ntransports; k++)
        if (!b->tr_ok[k])
            printf("Transport %s: init failed: %s\n", b->ops[k]->name, b->tr_err[k]);
    printf("\n");
    if (fflush(stdout) != 0)
        die("writing the table failed");
}

int main(int argc, char **argv)
{
    static bench b; /* large: keep it off the stack */
    int mpi_up = 0, provided = 0;
    if (MPI_Initialized(&mpi_up) != MPI_SUCCESS) {
        say("MPI_Initialized failed\n");
        return 2;
    }
    if (!mpi_up && MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
        say("MPI_Init_thread failed\n");
        return 2;
    }
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &b.rank), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &b.size), "MPI_Comm_size");
    g_rank = b.rank;

    /* Every rank parses the same arguments; only rank 0 complains. */
    if (parse_args(&b, argc, argv) != 0) {
        if (b.rank == 0)
            usage(argv[0]);
        if (!mpi_up && MPI_Finalize() != MPI_SUCCESS)
            return 2;
        return 2;
    }
    if (b.ntransports == 0)
        say("no transports compiled besides 'self'; MPI_Bcast and memcpy only\n");

    run_mpi_and_memcpy(&b);
    for (int k = 0; k < b.ntransports; k++)
        run_transport(&b, k);
    if (b.rank == 0)
        print_table(&b);

    if (!mpi_up && MPI_Finalize() != MPI_SUCCESS) {
        fprintf(stderr, "bcast_bench rank %d: MPI_Finalize failed\n", b.rank);
        return 1;
    }
    return 0;
}
