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
#include <stdio.h>
#include <stdlib.h>
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

int mpii_ctx_index_wanted(const mpii_context *ctx)
{
    return ctx->size > 1 && ctx->node.local_rank == 0 && ctx->node.local_size > 1 &&
           !ctx->node_relay;
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

/* One pause of a reader's wait: short at first (the leader is usually a few
 * hundred microseconds behind), then 1 ms, so that a node of oversubscribed
 * ranks does not spin. */
static void index_pause(double waited_s)
{
    struct timespec ts = {0, waited_s < 0.01 ? 50000L : 1000000L};
    (void)nanosleep(&ts, NULL); /* an interrupted sleep is only a shorter pause */
}

mpii_status mpii_ctx_index_read(mpii_context *ctx, uint64_t seq, double timeout_s, void **buf,
                                size_t *len)
{
    char path[MPII_PATH_MAX], failed[MPII_PATH_MAX];
    if (!record_name(path, sizeof path, ctx->stage_root, seq, "") ||
        !record_name(failed, sizeof failed, ctx->stage_root, seq, ".failed"))
        return MPII_ERR_TOOLONG;
    double t0 = mpii_monotonic_s();
    int fd;
    for (;;) {
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno != ENOENT)
            return errno == ELOOP ? MPII_ERR_UNSAFE : MPII_ERR_IO;
        struct stat sb;
        if (lstat(failed, &sb) == 0)
            return MPII_ERR_NOSPACE; /* the leader could not write it */
        double waited = mpii_monotonic_s() - t0;
        if (timeout_s >= 0 && waited >= timeout_s)
            return MPII_ERR_TIMEOUT;
        index_pause(waited);
    }
    struct stat sb;
    mpii_status st = MPII_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
        st = MPII_ERR_UNSAFE;
    size_t n = st == MPII_OK ? (size_t)sb.st_size : 0;
    uint8_t *data = NULL;
    if (st == MPII_OK && (data = malloc(n ? n : 1)) == NULL)
        st = MPII_ERR_NOMEM;
    if (st == MPII_OK)
        st = mpii_read_full(fd, data, n);
    if (close(fd) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    if (st != MPII_OK) {
        free(data);
        return st;
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
