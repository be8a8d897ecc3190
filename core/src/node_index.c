/* node_index.c — the node's index: how a message reaches the ranks of a node
 * that are not its leader.
 *
 * Rank 0 broadcasts each message to the node leaders only (local rank 0 of
 * each node, MPII_GROUP_LEADERS). A leader stages the message's file bytes in
 * the node's stage (serve.c) and then writes the message's facts (listings,
 * misses, file stat data with MPII_FILE_STAGED, code) as one record of the
 * index: the file "<stage root>/.mpiimport/m<seq>", written once with O_EXCL
 * and published by rename (stage.c), so it is never seen half written. The
 * node's other ranks read record seq+1 when they need the next message: they
 * receive nothing over the transport, and the bytes they serve come from the
 * staged files, one copy per node in the page cache. Rank 0 writes its own
 * node's records as it sends. The end of the session is a record holding the
 * END marker.
 *
 * A leader that cannot write a record (a full /dev/shm) marks it
 * "m<seq>.failed" and relays that message and every later one whole over the
 * transport to its node (MPII_GROUP_NODE); a reader that finds the mark turns
 * to the relay at the same message. Slower on memory, never wrong.
 *
 * The records are this job's, in a directory only this user can enter (the
 * stage root is 0700 and checked), so their MPII_FILE_STAGED notes are kept;
 * a record is still parsed and checksummed like any message. A reader that
 * finds nothing within its timeout returns MPII_ERR_TIMEOUT, as a receive
 * does. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "context_internal.h"
#include "mpiimport/util.h"

#define INDEX_DIR "/.mpiimport"

static int record_name(char *out, size_t cap, const char *root, uint64_t seq, const char *suffix)
{
    int n = snprintf(out, cap, "%s" INDEX_DIR "/m%010llu%s", root != NULL ? root : "",
                     (unsigned long long)seq, suffix);
    return n > 0 && (size_t)n < cap;
}

mpii_status mpii_ctx_index_write(mpii_context *ctx, uint64_t seq, const uint8_t *buf, size_t len)
{
    mpii_status st = mpii_ctx_open_stage(ctx);
    if (st != MPII_OK)
        return st;
    char original[64], staged[MPII_PATH_MAX];
    if (!record_name(original, sizeof original, NULL, seq, ""))
        return MPII_ERR_TOOLONG;
    st = mpii_stage_file(ctx->stage, original, buf, len, ctx->cfg.timeout_s, staged, sizeof staged);
    if (st == MPII_OK) {
        ctx->stats.index_records++;
        ctx->stats.index_bytes += len;
    }
    return st;
}

void mpii_ctx_index_mark_failed(mpii_context *ctx, uint64_t seq)
{
    char failed[MPII_PATH_MAX];
    if (!record_name(failed, sizeof failed, ctx->stage_root, seq, ".failed"))
        return;
    struct stat sb;
    if (lstat(failed, &sb) == 0)
        return; /* stage.c left it: the file system is full */
    int fd = open(failed, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0 && close(fd) != 0)
        fd = -1;
    /* No mark (the directory itself is gone): the readers time out instead. */
}

/* A reader sleeps until its leader publishes a record: an inotify watch on
 * the index directory (a record appears by rename), so that the node's
 * waiting ranks take no CPU from the leader (nodes are often fully
 * subscribed). Until the directory exists, and where inotify is not
 * available, it polls: 50 us at first, then 1 ms. */
static void index_watch(mpii_context *ctx)
{
    if (ctx->index_watch >= 0)
        return;
    char dir[MPII_PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s" INDEX_DIR, ctx->stage_root);
    if (n < 0 || (size_t)n >= sizeof dir)
        return;
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0)
        return;
    if (inotify_add_watch(fd, dir, IN_MOVED_TO | IN_CREATE | IN_ONLYDIR | IN_DONT_FOLLOW) < 0) {
        (void)close(fd); /* not there yet: the next wait tries again */
        return;
    }
    ctx->index_watch = fd;
}

static void index_pause(mpii_context *ctx, double waited_s, double left_s)
{
    if (ctx->index_watch >= 0) {
        struct pollfd p = {ctx->index_watch, POLLIN, 0};
        double ms = left_s < 0 || left_s > 0.1 ? 100.0 : left_s * 1000.0 + 1.0;
        if (poll(&p, 1, (int)ms) > 0) {
            char events[4096];
            while (read(ctx->index_watch, events, sizeof events) > 0)
                ; /* drained: the caller looks for its record itself */
        }
        return;
    }
    struct timespec ts = {0, waited_s < 0.01 ? 50000L : 1000000L};
    (void)nanosleep(&ts, NULL); /* an interrupted sleep is only a shorter pause */
    index_watch(ctx);
}

void mpii_ctx_index_close(mpii_context *ctx)
{
    if (ctx->index_watch >= 0 && close(ctx->index_watch) != 0)
        ctx->index_watch = -1; /* nothing more to do about a failed close */
    ctx->index_watch = -1;
}

mpii_status mpii_ctx_index_read(mpii_context *ctx, uint64_t seq, double timeout_s, void **buf,
                                size_t *len)
{
    char path[MPII_PATH_MAX], failed[MPII_PATH_MAX];
    if (!record_name(path, sizeof path, ctx->stage_root, seq, "") ||
        !record_name(failed, sizeof failed, ctx->stage_root, seq, ".failed"))
        return MPII_ERR_TOOLONG;
    double t0 = mpii_monotonic_s();
    uint8_t *data = NULL;
    size_t n = 0;
    index_watch(ctx); /* before the first look: no record is missed */
    for (;;) {
        mpii_status st = mpii_read_file(path, O_NOFOLLOW, 1, &data, &n);
        if (st == MPII_OK)
            break;
        if (st != MPII_ERR_NOTFOUND)
            return st;
        struct stat sb;
        if (lstat(failed, &sb) == 0)
            return MPII_ERR_NOSPACE; /* the leader could not write it */
        double waited = mpii_monotonic_s() - t0;
        if (timeout_s >= 0 && waited >= timeout_s)
            return MPII_ERR_TIMEOUT;
        index_pause(ctx, waited, timeout_s >= 0 ? timeout_s - waited : -1.0);
    }
    ctx->stats.index_records++;
    ctx->stats.index_bytes += n;
    *buf = data;
    *len = n;
    return MPII_OK;
}

mpii_status mpii_ctx_index_facts(mpii_context *ctx, const mpii_image *msg, uint64_t seq,
                                 const char *label)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    mpii_status st = mpii_image_serialize(msg, seq, label, &buf, &len);
    if (st != MPII_OK)
        return st;
    st = mpii_ctx_index_write(ctx, seq, buf, len);
    free(buf);
    return st;
}
