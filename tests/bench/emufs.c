/*
 * emufs — an emulated parallel file system's metadata server, for benchmarks.
 *
 * A read-only FUSE (libfuse3, high-level API) passthrough of a directory tree
 * SRC, mounted at MNT, that behaves like one busy metadata server:
 *
 *   - ONE request-serving thread (fuse_loop, single-threaded): requests queue.
 *   - every metadata operation (lookup/getattr, open, opendir/readdir,
 *     readlink, access, statfs) costs --meta-us microseconds of service time;
 *     reads cost bytes / --read-mbps (MB = 10^6 bytes). Service time is slept
 *     (timer slack 1 ns), so the emulated server does not take CPU from the
 *     processes it serves; the time is counted as "busy".
 *   - kernel caching off: entry, attribute and negative timeouts 0, direct_io,
 *     no readdir cache, no readdirplus, so every access of every process
 *     reaches the server (the kernel still serves mmap page faults of a
 *     private mapping, e.g. dlopen, from the page cache while mapped).
 *   - counters per operation type and per requesting process:
 *     fuse_get_context()->pid (a thread id) is mapped to its process
 *     (/proc/<tid>/status Tgid); on first sight of a process, its
 *     /proc/<pid>/environ is read for OMPI_COMM_WORLD_RANK (or PMIX_RANK,
 *     PMI_RANK, SLURM_PROCID) to attribute it to an MPI rank; otherwise the
 *     pid and its command name are recorded.
 *   - statistics as JSON (to --stats FILE, written atomically: FILE.tmp then
 *     rename) on SIGUSR1, after a reset of every counter on SIGUSR2, and at
 *     unmount (with "final": true). Each dump carries an increasing "seq".
 *     A separate control thread waits for the signals; it never serves
 *     requests.
 *   - the mount point must be an empty directory; paths under SRC that lead
 *     back into MNT are hidden (ENOENT) so the single thread cannot deadlock
 *     on itself.
 *
 * Two marks split each process's counts into three windows. A lookup of
 * /.emufs-mark (e.g. os.stat(MNT + "/.emufs-mark")) ends the first, a lookup
 * of /.emufs-mark2 the second; per rank, the counts before the first mark
 * are reported as "before_mark" (the interpreter's start-up), those between
 * the marks as "between_marks" (e.g. `import mpiimport; mpiimport.install()`)
 * and those after the second as "after_marks"; the rank's top-level counts
 * stay the sum of all three. Marks are neither charged nor counted, answer
 * ENOENT, and only move a process forward: a repeated mark does nothing, and
 * a second mark without a first closes both windows at once (the
 * between-marks window then is empty). The kernel checks the root
 * directory's attributes (a getattr of "/") before each lookup in it; when a
 * process's last counted request was that getattr, a mark takes it back
 * (count and charge), so that a mark costs nothing in any window.
 *
 * Close/releasedir are counted ("close") but not charged: the model charges
 * the operations that resolve names and fetch attributes or data.
 *
 * Usage: emufs [options] SRC MNT   (see usage() below); unmount with
 * `fusermount3 -u MNT` (or SIGINT/SIGTERM to emufs).
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 31

#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum op {
    OP_GETATTR, OP_READLINK, OP_ACCESS, OP_OPEN, OP_OPENDIR, OP_READDIR,
    OP_STATFS, OP_READ, OP_CLOSE, OP_COUNT
};
static const char *const op_names[OP_COUNT] = {
    "getattr", "readlink", "access", "open", "opendir", "readdir",
    "statfs", "read", "close"
};
/* Operations charged --meta-us and summed as "meta_ops". */
static int op_is_meta(int op) { return op <= OP_STATFS; }

/* A process's counting windows, in order; it only ever moves forward. */
enum window { WIN_BEFORE, WIN_BETWEEN, WIN_AFTER, WIN_COUNT };
static const char *const win_names[WIN_COUNT] = { "before_mark", "between_marks", "after_marks" };

struct client {
    pid_t pid;        /* process (thread group) id */
    int rank;         /* MPI rank, or -1 */
    char comm[32];    /* command name when no rank was found */
    uint64_t ops[OP_COUNT];
    uint64_t read_bytes;
    double busy_s;
    int window;       /* WIN_*: which marks it has passed */
    uint64_t win_ops[WIN_COUNT][OP_COUNT]; /* counts per window; ops = their sum */
    uint64_t win_read_bytes[WIN_COUNT];
    double win_busy_s[WIN_COUNT];
    int root_getattr_last; /* its last request (closes aside) was a getattr of "/" */
    int rank_checks;  /* environ reads while rank is -1 (see client_for) */
};

/* Lookups of these names in the root mark the calling process (see the top
 * of the file): MARK_NAME ends its window WIN_BEFORE, MARK2_NAME its window
 * WIN_BETWEEN. Not charged, not counted; both answer ENOENT. */
#define MARK_NAME "/.emufs-mark"
#define MARK2_NAME "/.emufs-mark2"

/* Thread id -> client index, a small open-addressing table. */
struct tid_slot { pid_t tid; int client; };

static struct {
    char src[PATH_MAX];
    char mnt[PATH_MAX];
    size_t mnt_len;
    long meta_us;
    double read_mbps;
    const char *stats_path;

    pthread_mutex_t lock;
    uint64_t seq;
    struct timespec started;
    uint64_t ops[OP_COUNT];
    uint64_t read_bytes;
    double busy_s;
    struct client *clients;
    size_t nclients, capclients;
    struct tid_slot *tids;
    size_t captids, ntids;
} G = { .meta_us = 200, .read_mbps = 500.0, .lock = PTHREAD_MUTEX_INITIALIZER };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Sleeps s seconds of service time. A sleep overshoots (timer and wake-up
 * latency, tens of microseconds in a VM); the overshoot is carried as credit
 * and taken off the next service times, so that on average each operation
 * costs what was asked. Serving thread only. */
static void serve_s(double s)
{
    static double credit;
    if (s <= 0)
        return;
    if (credit >= s) {
        credit -= s;
        return;
    }
    double start = now_s(), want = s - credit, deadline = start + want;
    struct timespec t = { (time_t)deadline, (long)((deadline - (double)(time_t)deadline) * 1e9) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
    }
    double late = now_s() - deadline;
    credit = late > 0 ? late : 0;
    if (credit > 0.01) /* a long preemption is not owed back */
        credit = 0.01;
}

/* ---- process attribution ------------------------------------------------ */

static pid_t tgid_of(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return tid;
    pid_t tgid = tid;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Tgid:", 5) == 0) {
            tgid = (pid_t)atoi(line + 5);
            break;
        }
    }
    fclose(f);
    return tgid;
}

static int rank_of(pid_t pid)
{
    static const char *const vars[] = {
        "OMPI_COMM_WORLD_RANK=", "PMIX_RANK=", "PMI_RANK=", "SLURM_PROCID="
    };
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return -1;
    }
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap)
            break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb)
            break;
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    buf[len] = '\0';
    int found[4] = { -1, -1, -1, -1 };
    for (size_t i = 0; i < len; i += strlen(buf + i) + 1) {
        for (int v = 0; v < 4; v++) {
            size_t vl = strlen(vars[v]);
            if (strncmp(buf + i, vars[v], vl) == 0)
                found[v] = atoi(buf + i + vl);
        }
    }
    free(buf);
    for (int v = 0; v < 4; v++)
        if (found[v] >= 0)
            return found[v];
    return -1;
}

static void comm_of(pid_t pid, char *out, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(out, (int)n, f))
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

static int tid_table_grow(void)
{
    size_t cap = G.captids ? G.captids * 2 : 1024;
    struct tid_slot *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < G.captids; i++) {
        if (G.tids[i].tid == 0)
            continue;
        size_t h = (size_t)G.tids[i].tid * 2654435761u % cap;
        while (t[h].tid)
            h = (h + 1) % cap;
        t[h] = G.tids[i];
    }
    free(G.tids);
    G.tids = t;
    G.captids = cap;
    return 0;
}

/* The client for the calling request; G.lock held. NULL on memory exhaustion. */
static struct client *client_for(pid_t tid)
{
    if (tid == 0) /* 0 marks a free slot; requests from no process count as -1 */
        tid = -1;
    if (G.ntids * 2 >= G.captids && tid_table_grow() != 0)
        return NULL;
    size_t h = (size_t)tid * 2654435761u % G.captids;
    while (G.tids[h].tid) {
        if (G.tids[h].tid == tid) {
            struct client *c = &G.clients[G.tids[h].client];
            /* A process that execs a program on this mount (the interpreter
             * itself) makes its first requests inside execve, whose
             * /proc/<pid>/environ is still the old one: look again for a
             * while, and its counts so far become the rank's. */
            if (c->rank < 0 && c->rank_checks < 64) {
                c->rank_checks++;
                c->rank = rank_of(c->pid);
            }
            return c;
        }
        h = (h + 1) % G.captids;
    }
    pid_t pid = tgid_of(tid);
    int idx = -1;
    for (size_t i = 0; i < G.nclients; i++)
        if (G.clients[i].pid == pid) {
            idx = (int)i;
            break;
        }
    if (idx < 0) {
        if (G.nclients == G.capclients) {
            size_t cap = G.capclients ? G.capclients * 2 : 64;
            struct client *c = realloc(G.clients, cap * sizeof *c);
            if (!c)
                return NULL;
            G.clients = c;
            G.capclients = cap;
        }
        struct client *c = &G.clients[G.nclients];
        memset(c, 0, sizeof *c);
        c->pid = pid;
        c->rank = rank_of(pid);
        if (c->rank < 0)
            comm_of(pid, c->comm, sizeof c->comm);
        idx = (int)G.nclients++;
    }
    G.tids[h].tid = tid;
    G.tids[h].client = idx;
    G.ntids++;
    return &G.clients[idx];
}

/* Which thread opened each file descriptor: releases arrive from the kernel
 * without the opener's pid, so closes are attributed to the opener. */
#define FD_OWNERS 65536
static pid_t fd_owner[FD_OWNERS];

/* Counts one operation of thread tid (0: the caller) and sleeps its service time;
 * root_getattr: it is a getattr of "/" (see mark_caller). */
static void charge_as(int op, uint64_t bytes, pid_t tid, int root_getattr)
{
    double cost = 0.0;
    if (op_is_meta(op))
        cost = (double)G.meta_us * 1e-6;
    else if (op == OP_READ && G.read_mbps > 0)
        cost = (double)bytes / (G.read_mbps * 1e6);
    if (tid == 0) {
        struct fuse_context *ctx = fuse_get_context();
        tid = ctx ? ctx->pid : 0;
    }
    pthread_mutex_lock(&G.lock);
    G.ops[op]++;
    G.read_bytes += bytes;
    G.busy_s += cost;
    struct client *c = client_for(tid);
    if (c) {
        c->ops[op]++;
        c->read_bytes += bytes;
        c->busy_s += cost;
        c->win_ops[c->window][op]++;
        c->win_read_bytes[c->window] += bytes;
        c->win_busy_s[c->window] += cost;
        if (op != OP_CLOSE) /* releases arrive asynchronously, out of order */
            c->root_getattr_last = root_getattr;
    }
    pthread_mutex_unlock(&G.lock);
    serve_s(cost);
}

static void charge(int op, uint64_t bytes) { charge_as(op, bytes, 0, 0); }

/* Moves the calling process to window `to` (WIN_BETWEEN or WIN_AFTER), never back.
 * The getattr of "/" that the kernel sent just before this lookup (its permission
 * check of the root directory) is the mark's own, so it is taken back: count and
 * charge, from the process, its window and the totals (its sleep is not undone). */
static void mark_caller(int to)
{
    struct fuse_context *ctx = fuse_get_context();
    double cost = (double)G.meta_us * 1e-6;
    pthread_mutex_lock(&G.lock);
    struct client *c = client_for(ctx ? ctx->pid : 0);
    if (c) {
        if (c->root_getattr_last && c->ops[OP_GETATTR] > 0 && c->win_ops[c->window][OP_GETATTR] > 0) {
            c->ops[OP_GETATTR]--;
            c->win_ops[c->window][OP_GETATTR]--;
            c->busy_s -= cost;
            c->win_busy_s[c->window] -= cost;
            G.ops[OP_GETATTR]--;
            G.busy_s -= cost;
        }
        c->root_getattr_last = 0;
        if (c->window < to)
            c->window = to;
    }
    pthread_mutex_unlock(&G.lock);
}

static void set_owner(int fd)
{
    struct fuse_context *ctx = fuse_get_context();
    if (fd >= 0 && fd < FD_OWNERS)
        fd_owner[fd] = ctx ? ctx->pid : 0;
}

static void charge_close(int fd)
{
    pid_t tid = fd >= 0 && fd < FD_OWNERS ? fd_owner[fd] : 0;
    charge_as(OP_CLOSE, 0, tid ? tid : -1, 0);
}

/* ---- statistics ----------------------------------------------------------- */

static void json_counts(FILE *f, const uint64_t *ops, uint64_t bytes, double busy)
{
    uint64_t meta = 0;
    for (int i = 0; i < OP_COUNT; i++) {
        fprintf(f, "\"%s\": %llu, ", op_names[i], (unsigned long long)ops[i]);
        if (op_is_meta(i))
            meta += ops[i];
    }
    fprintf(f, "\"meta_ops\": %llu, \"read_bytes\": %llu, \"busy_s\": %.6f",
            (unsigned long long)meta, (unsigned long long)bytes, busy);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* Writes the statistics to G.stats_path (atomically); G.lock held. */
static void write_stats(int final)
{
    if (!G.stats_path)
        return;
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", G.stats_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "emufs: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double up = (double)(t.tv_sec - G.started.tv_sec) + (double)(t.tv_nsec - G.started.tv_nsec) * 1e-9;
    fprintf(f, "{\"emufs\": 1, \"seq\": %llu, \"final\": %s, \"meta_us\": %ld, \"read_mbps\": %g, ",
            (unsigned long long)++G.seq, final ? "true" : "false", G.meta_us, G.read_mbps);
    fprintf(f, "\"src\": ");
    json_string(f, G.src);
    fprintf(f, ", \"mountpoint\": ");
    json_string(f, G.mnt);
    fprintf(f, ", \"since_reset_s\": %.6f,\n \"totals\": {", up);
    json_counts(f, G.ops, G.read_bytes, G.busy_s);
    fprintf(f, "},\n \"ranks\": {");
    /* A rank may appear as several processes (e.g. exec): merge by rank. */
    int first = 1;
    for (size_t i = 0; i < G.nclients; i++) {
        struct client *c = &G.clients[i];
        if (c->rank < 0)
            continue;
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            if (G.clients[j].rank == c->rank)
                seen = 1;
        if (seen)
            continue;
        uint64_t ops[OP_COUNT] = { 0 }, bytes = 0;
        uint64_t wops[WIN_COUNT][OP_COUNT] = { { 0 } }, wbytes[WIN_COUNT] = { 0 };
        double busy = 0, wbusy[WIN_COUNT] = { 0 };
        int nproc = 0, marked = 0, marked2 = 0;
        for (size_t j = i; j < G.nclients; j++) {
            const struct client *cj = &G.clients[j];
            if (cj->rank != c->rank)
                continue;
            for (int k = 0; k < OP_COUNT; k++)
                ops[k] += cj->ops[k];
            bytes += cj->read_bytes;
            busy += cj->busy_s;
            for (int w = 0; w < WIN_COUNT; w++) {
                for (int k = 0; k < OP_COUNT; k++)
                    wops[w][k] += cj->win_ops[w][k];
                wbytes[w] += cj->win_read_bytes[w];
                wbusy[w] += cj->win_busy_s[w];
            }
            marked |= cj->window >= WIN_BETWEEN;
            marked2 |= cj->window >= WIN_AFTER;
            nproc++;
        }
        fprintf(f, "%s\n  \"%d\": {\"processes\": %d, \"marked\": %s, \"marked2\": %s, ",
                first ? "" : ",", c->rank, nproc, marked ? "true" : "false", marked2 ? "true" : "false");
        json_counts(f, ops, bytes, busy);
        for (int w = 0; w < WIN_COUNT; w++) {
            fprintf(f, ",\n    \"%s\": {", win_names[w]);
            json_counts(f, wops[w], wbytes[w], wbusy[w]);
            fputc('}', f);
        }
        fputc('}', f);
        first = 0;
    }
    fprintf(f, "},\n \"unranked\": [");
    first = 1;
    for (size_t i = 0; i < G.nclients; i++) {
        struct client *c = &G.clients[i];
        if (c->rank >= 0)
            continue;
        fprintf(f, "%s\n  {\"pid\": %d, \"comm\": ", first ? "" : ",", (int)c->pid);
        json_string(f, c->comm);
        fputs(", ", f);
        json_counts(f, c->ops, c->read_bytes, c->busy_s);
        fputc('}', f);
        first = 0;
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0 || rename(tmp, G.stats_path) != 0)
        fprintf(stderr, "emufs: cannot write %s: %s\n", G.stats_path, strerror(errno));
}

static void reset_stats(void)
{
    memset(G.ops, 0, sizeof G.ops);
    G.read_bytes = 0;
    G.busy_s = 0;
    G.nclients = 0; /* pids may be reused between jobs: forget them */
    if (G.tids)
        memset(G.tids, 0, G.captids * sizeof *G.tids);
    G.ntids = 0;
    clock_gettime(CLOCK_MONOTONIC, &G.started);
}

static void *control_thread(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0)
            continue;
        int old;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
        pthread_mutex_lock(&G.lock);
        if (sig == SIGUSR2)
            reset_stats();
        write_stats(0);
        pthread_mutex_unlock(&G.lock);
        pthread_setcancelstate(old, NULL);
    }
    return NULL;
}

/* ---- file-system operations ------------------------------------------- */

/* SRC + path into out; -ENOENT for paths that lead back into the mount. */
static int real_path(const char *path, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s%s", strcmp(G.src, "/") == 0 ? "" : G.src, path);
    if (n < 0 || n >= PATH_MAX)
        return -ENAMETOOLONG;
    if (strncmp(out, G.mnt, G.mnt_len) == 0 && (out[G.mnt_len] == '\0' || out[G.mnt_len] == '/'))
        return -ENOENT;
    return 0;
}

static void *e_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->direct_io = 1;
    cfg->kernel_cache = 0;
    cfg->auto_cache = 0;
    cfg->use_ino = 1;
    conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS;
    conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
    conn->want &= ~(unsigned)FUSE_CAP_CACHE_SYMLINKS;
    return NULL;
}

static int e_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (!fi && strcmp(path, MARK_NAME) == 0) {
        mark_caller(WIN_BETWEEN);
        return -ENOENT;
    }
    if (!fi && strcmp(path, MARK2_NAME) == 0) {
        mark_caller(WIN_AFTER);
        return -ENOENT;
    }
    charge_as(OP_GETATTR, 0, 0, !fi && strcmp(path, "/") == 0);
    int r;
    if (fi)
        r = fstat((int)fi->fh, st);
    else {
        char p[PATH_MAX];
        int e = real_path(path, p);
        if (e)
            return e;
        r = lstat(p, st);
    }
    return r == -1 ? -errno : 0;
}

static int e_readlink(const char *path, char *buf, size_t size)
{
    charge(OP_READLINK, 0);
    char p[PATH_MAX];
    int e = real_path(path, p);
    if (e)
        return e;
    ssize_t n = readlink(p, buf, size - 1);
    if (n == -1)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static int e_access(const char *path, int mask)
{
    charge(OP_ACCESS, 0);
    char p[PATH_MAX];
    int e = real_path(path, p);
    if (e)
        return e;
    if (mask & W_OK)
        return -EROFS;
    return access(p, mask) == -1 ? -errno : 0;
}

static int e_open(const char *path, struct fuse_file_info *fi)
{
    charge(OP_OPEN, 0);
    if ((fi->flags & O_ACCMODE) != O_RDONLY)
        return -EROFS;
    char p[PATH_MAX];
    int e = real_path(path, p);
    if (e)
        return e;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -errno;
    fi->fh = (uint64_t)fd;
    set_owner(fd);
    fi->direct_io = 1;
    fi->keep_cache = 0;
    return 0;
}

static int e_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    ssize_t n = pread((int)fi->fh, buf, size, off);
    if (n == -1)
        return -errno;
    charge(OP_READ, (uint64_t)n);
    return (int)n;
}

static int e_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    charge_close((int)fi->fh);
    close((int)fi->fh);
    return 0;
}

static int e_opendir(const char *path, struct fuse_file_info *fi)
{
    charge(OP_OPENDIR, 0);
    char p[PATH_MAX];
    int e = real_path(path, p);
    if (e)
        return e;
    DIR *d = opendir(p);
    if (!d)
        return -errno;
    fi->fh = (uint64_t)(uintptr_t)d;
    set_owner(dirfd(d));
    fi->cache_readdir = 0;
    fi->keep_cache = 0;
    return 0;
}

/* One call lists the whole directory (offset 0 mode): one charged "readdir"
 * per listing, however many getdents calls the client makes. */
static int e_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path;
    (void)off;
    (void)flags;
    charge(OP_READDIR, 0);
    DIR *d = (DIR *)(uintptr_t)fi->fh;
    rewinddir(d);
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = de->d_ino;
        st.st_mode = (mode_t)DTTOIF(de->d_type);
        if (fill(buf, de->d_name, &st, 0, 0))
            return 0;
    }
    return 0;
}

static int e_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    DIR *d = (DIR *)(uintptr_t)fi->fh;
    charge_close(dirfd(d));
    closedir(d);
    return 0;
}

static int e_statfs(const char *path, struct statvfs *sv)
{
    charge(OP_STATFS, 0);
    char p[PATH_MAX];
    int e = real_path(path, p);
    if (e)
        return e;
    return statvfs(p, sv) == -1 ? -errno : 0;
}

static const struct fuse_operations ops = {
    .init = e_init,
    .getattr = e_getattr,
    .readlink = e_readlink,
    .access = e_access,
    .open = e_open,
    .read = e_read,
    .release = e_release,
    .opendir = e_opendir,
    .readdir = e_readdir,
    .releasedir = e_releasedir,
    .statfs = e_statfs,
};

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: emufs [options] SRC MNT\n"
        "\n"
        "Mounts a read-only passthrough of directory SRC at the empty directory MNT,\n"
        "served by ONE thread that sleeps a fixed service time per metadata operation\n"
        "(lookup/getattr, open, opendir/readdir, readlink, access, statfs) and per\n"
        "byte read, with kernel caching off: an emulated parallel file system's\n"
        "metadata server. Counts operations per type and per process (MPI rank from\n"
        "OMPI_COMM_WORLD_RANK / PMIX_RANK / PMI_RANK / SLURM_PROCID in its environment),\n"
        "split per process by lookups of MNT/.emufs-mark and MNT/.emufs-mark2 into\n"
        "\"before_mark\", \"between_marks\" and \"after_marks\".\n"
        "\n"
        "options:\n"
        "  --meta-us N      service time of one metadata operation, microseconds (default 200)\n"
        "  --read-mbps X    read bandwidth, MB/s (10^6 bytes); 0 = free (default 500)\n"
        "  --stats FILE     write statistics as JSON to FILE on SIGUSR1, after a reset\n"
        "                   of every counter on SIGUSR2, and at unmount\n"
        "  -f, --foreground do not daemonize\n"
        "  -d, --debug      libfuse debug output (implies -f)\n"
        "  -o OPT[,OPT]     extra FUSE mount options (e.g. allow_other)\n"
        "  -h, --help       this message\n"
        "\n"
        "Unmount with: fusermount3 -u MNT  (SIGINT/SIGTERM also unmount).\n");
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("emufs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int main(int argc, char **argv)
{
    int foreground = 0, debug = 0;
    const char *pos[2];
    int npos = 0;
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    fuse_opt_add_arg(&args, argv[0]);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int needs = strcmp(a, "--meta-us") == 0 || strcmp(a, "--read-mbps") == 0 ||
                    strcmp(a, "--stats") == 0 || strcmp(a, "-o") == 0;
        if (needs) {
            if (i + 1 >= argc) {
                usage(stderr);
                return die("%s needs a value", a);
            }
            val = argv[++i];
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--meta-us") == 0) {
            if (parse_long(val, &G.meta_us) != 0)
                return die("--meta-us: not a non-negative integer: %s", val);
        } else if (strcmp(a, "--read-mbps") == 0) {
            char *end;
            G.read_mbps = strtod(val, &end);
            if (end == val || *end || G.read_mbps < 0)
                return die("--read-mbps: not a non-negative number: %s", val);
        } else if (strcmp(a, "--stats") == 0) {
            G.stats_path = val;
        } else if (strcmp(a, "-o") == 0) {
            fuse_opt_add_arg(&args, "-o");
            fuse_opt_add_arg(&args, val);
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--foreground") == 0) {
            foreground = 1;
        } else if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0) {
            debug = foreground = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            usage(stderr);
            return die("unknown option %s", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            usage(stderr);
            return die("too many arguments: %s", a);
        }
    }
    if (npos != 2) {
        usage(stderr);
        return 2;
    }
    if (!realpath(pos[0], G.src))
        return die("SRC %s: %s", pos[0], strerror(errno));
    if (!realpath(pos[1], G.mnt))
        return die("MNT %s: %s", pos[1], strerror(errno));
    G.mnt_len = strlen(G.mnt);
    struct stat st;
    if (stat(G.src, &st) != 0 || !S_ISDIR(st.st_mode))
        return die("SRC %s is not a directory", G.src);
    DIR *d = opendir(G.mnt);
    if (!d)
        return die("MNT %s: %s", G.mnt, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            closedir(d);
            return die("mount point %s is not empty (found %s); refusing to mount over it",
                       G.mnt, de->d_name);
        }
    }
    closedir(d);
    if (strcmp(G.src, G.mnt) == 0)
        return die("SRC and MNT are the same directory");
    /* A stats file inside the mount would recurse into the server. */
    if (G.stats_path && G.stats_path[0] != '/')
        return die("--stats needs an absolute path");

    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "ro,default_permissions,fsname=emufs,subtype=emufs");
    if (debug)
        fuse_opt_add_arg(&args, "-d");

    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &G.started);

    struct fuse *fuse = fuse_new(&args, &ops, sizeof ops, NULL);
    if (!fuse) {
        fuse_opt_free_args(&args);
        return die("fuse_new failed");
    }
    if (fuse_mount(fuse, G.mnt) != 0) {
        fuse_destroy(fuse);
        fuse_opt_free_args(&args);
        return die("cannot mount at %s", G.mnt);
    }
    if (fuse_daemonize(foreground) != 0) {
        fuse_unmount(fuse);
        fuse_destroy(fuse);
        return die("cannot daemonize");
    }
    /* SIGUSR1/2 go to the control thread only; the serving thread never sees them. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t ctl;
    int have_ctl = pthread_create(&ctl, NULL, control_thread, &set) == 0;
    if (!have_ctl)
        fprintf(stderr, "emufs: no control thread: statistics only at unmount\n");
    if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0) {
        fuse_unmount(fuse);
        fuse_destroy(fuse);
        return die("cannot set signal handlers");
    }
    if (G.stats_path) {
        pthread_mutex_lock(&G.lock);
        write_stats(0);
        pthread_mutex_unlock(&G.lock);
    }

    int rc = fuse_loop(fuse); /* single-threaded: one request at a time */

    fuse_remove_signal_handlers(fuse_get_session(fuse));
    fuse_unmount(fuse);
    if (have_ctl) {
        pthread_cancel(ctl);
        pthread_join(ctl, NULL);
    }
    pthread_mutex_lock(&G.lock);
    write_stats(1);
    pthread_mutex_unlock(&G.lock);
    fuse_destroy(fuse);
    fuse_opt_free_args(&args);
    free(G.clients);
    free(G.tids);
    return rc == 0 ? 0 : 1;
}
