/* distribute_image.c — DISTRIBUTE a whole packed image to every node in one
 * collective, for `mpiimport run --image F` when F is not staged yet: rank 0
 * alone reads F, the node leaders receive it over the transport (the
 * LEADERS group: never the other ranks) and stage it on their node as
 * `mpiimport stage` would (stage_image.c), and each node's other ranks learn
 * the outcome from their leader (the NODE group, a few bytes).
 *
 * Messages, in order:
 *   LEADERS  header   "MPIIRUN1", u32 status (rank 0's stat of F), u32 0,
 *                     u64 size
 *   LEADERS  payload  F's bytes (empty when rank 0 could not read them)
 *   NODE     header   as received (so the node's ranks can bound their wait)
 *   NODE     result   u32 status of the node's stage, u32 temporary
 * then a barrier of every rank, so that every process of the step is in the
 * stage's registry before any of them can end.
 *
 * With for_this_step (`mpiimport run --stage`), a stage made here is
 * temporary: every rank of the step registers in it
 * (stage_registry.c), the step's last process removes it (the preload
 * library's destructor), and a start-up sweep removes one whose processes
 * were all killed. A stage that was there already without a registry (made
 * by `mpiimport stage`) is left as it is. Without for_this_step (`mpiimport
 * stage` run as a job step of its own) the stage stays until unstaged, as
 * one staged from a file does. Waits are bounded: timeout_s for
 * rank 0's first word, plus the time the payload takes at a conservative
 * rate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mpiimport/stage.h"
#include "mpiimport/util.h"

#define RUN_MAGIC "MPIIRUN1"
#define RUN_HEADER 24u
#define RUN_RESULT 8u
#define SLOW_BYTES_PER_S (20.0 * 1048576.0) /* the slowest rate a wait allows for */
#define PATH_CAP 4096

static void set_err(char *err, size_t cap, const char *what, const char *detail)
{
    if (err != NULL && cap > 0)
        snprintf(err, cap, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

/* Starts a group broadcast and waits for it: the root sends buf, the others
 * receive a malloc'd *out (may be NULL when out is NULL: freed). */
static mpii_status group_bcast(const mpii_transport_ops *ops, mpii_transport *t, int group,
                               const void *buf, size_t len, double timeout_s, uint8_t **out,
                               size_t *out_len)
{
    mpii_bcast_req *req = NULL;
    mpii_status st = ops->group_bcast_start(t, group, buf, len, &req);
    if (st != MPII_OK)
        return st;
    void *got = NULL;
    size_t got_len = 0;
    st = ops->bcast_wait(t, req, timeout_s, &got, &got_len);
    if (st != MPII_OK)
        return st; /* a timed-out request stays pending: the transport's finalize ends it */
    if (out != NULL) {
        *out = got;
        *out_len = got_len;
    } else {
        free(got);
    }
    return MPII_OK;
}

static void put_header(uint8_t *h, mpii_status status, uint64_t size)
{
    memcpy(h, RUN_MAGIC, 8);
    mpii_put_u32(h + 8, (uint32_t)status);
    mpii_put_u32(h + 12, 0);
    mpii_put_u64(h + 16, size);
}

static mpii_status get_header(const uint8_t *h, size_t len, mpii_status *status, uint64_t *size)
{
    if (h == NULL || len != RUN_HEADER || memcmp(h, RUN_MAGIC, 8) != 0)
        return MPII_ERR_CORRUPT;
    *status = (mpii_status)mpii_get_u32(h + 8);
    *size = mpii_get_u64(h + 16);
    return MPII_OK;
}

static double payload_wait(double timeout_s, uint64_t size)
{
    return timeout_s + (double)size / SLOW_BYTES_PER_S;
}

/* Rank 0: stats and reads the image, sends the header and the payload to
 * the leaders; *bytes keeps the payload for its own staging. */
static mpii_status root_send(const mpii_transport_ops *ops, mpii_transport *t, const char *path,
                             double timeout_s, uint8_t *header, uint8_t **bytes, size_t *len,
                             char *err, size_t cap)
{
    struct stat sb;
    mpii_status read_st = MPII_OK;
    if (stat(path, &sb) != 0)
        read_st = errno == ENOENT ? MPII_ERR_NOTFOUND : MPII_ERR_IO;
    else if (!S_ISREG(sb.st_mode))
        read_st = MPII_ERR_NOTREG;
    uint64_t size = read_st == MPII_OK ? (uint64_t)sb.st_size : 0;
    put_header(header, read_st, size);
    mpii_status st = group_bcast(ops, t, MPII_GROUP_LEADERS, header, RUN_HEADER, timeout_s, NULL, NULL);
    if (st != MPII_OK)
        return st;
    if (read_st == MPII_OK) {
        read_st = mpii_read_file(path, 0, 0, bytes, len);
        if (read_st == MPII_OK && *len != size)
            read_st = MPII_ERR_IO; /* changed under us: the leaders see a short payload */
    }
    if (read_st != MPII_OK) {
        free(*bytes);
        *bytes = NULL;
        *len = 0;
        set_err(err, cap, "rank 0 cannot read the image", mpii_strerror(read_st));
    }
    st = group_bcast(ops, t, MPII_GROUP_LEADERS, *bytes != NULL ? *bytes : (const void *)"", *len,
                     payload_wait(timeout_s, size), NULL, NULL);
    if (st == MPII_OK && read_st != MPII_OK)
        st = read_st;
    return st;
}

/* A leader: stages the payload; *temporary when this step owns the stage. */
static mpii_status leader_stage(const char *stage_dir, const char *image_path, const uint8_t *bytes,
                                size_t len, double timeout_s, int for_this_step, mpii_image_job *job)
{
    int already = 0;
    mpii_status st = mpii_stage_image_bytes(stage_dir, image_path, bytes, len, timeout_s, &already,
                                            &job->files, &job->bytes);
    job->already = already;
    if (st != MPII_OK || !for_this_step)
        return st;
    char root[PATH_CAP];
    if ((st = mpii_stage_image_root(stage_dir, image_path, root, sizeof root)) != MPII_OK)
        return st;
    /* there already without a registry: `mpiimport stage` made it, it stays */
    if (already && !mpii_stage_has_registry(root))
        return MPII_OK;
    job->temporary = 1;
    return mpii_stage_register(root);
}

mpii_status mpii_distribute_image(const mpii_transport_ops *ops, mpii_transport *t,
                                  const char *stage_dir, const char *image_path, double timeout_s,
                                  int for_this_step, mpii_image_job *job, char *err, size_t err_cap)
{
    if (ops == NULL || t == NULL || stage_dir == NULL || image_path == NULL || job == NULL)
        return MPII_ERR_INVALID;
    memset(job, 0, sizeof *job);
    if (err != NULL && err_cap > 0)
        err[0] = '\0';
    mpii_node_info node;
    mpii_status st = ops->node_info(t, &node);
    if (st != MPII_OK) {
        set_err(err, err_cap, "no node grouping", mpii_strerror(st));
        return st;
    }
    int rank = ops->rank(t);
    uint8_t header[RUN_HEADER], result[RUN_RESULT];
    uint8_t *bytes = NULL, *got = NULL;
    size_t len = 0, got_len = 0;
    mpii_status image_st = MPII_OK;
    uint64_t size = 0;

    job->leader = node.local_rank == 0;
    if (node.local_rank == 0) {
        /* the leaders: the image from rank 0 */
        if (rank == 0) {
            st = root_send(ops, t, image_path, timeout_s, header, &bytes, &len, err, err_cap);
            image_st = st;
            size = len;
        } else {
            st = group_bcast(ops, t, MPII_GROUP_LEADERS, NULL, 0, timeout_s, &got, &got_len);
            if (st == MPII_OK)
                st = get_header(got, got_len, &image_st, &size);
            if (st == MPII_OK)
                memcpy(header, got, RUN_HEADER);
            free(got);
            got = NULL;
            if (st == MPII_OK) {
                mpii_status pst = group_bcast(ops, t, MPII_GROUP_LEADERS, NULL, 0,
                                              payload_wait(timeout_s, size), &bytes, &len);
                if (pst != MPII_OK)
                    st = pst;
                else if (image_st != MPII_OK || len != size)
                    image_st = image_st != MPII_OK ? image_st : MPII_ERR_IO;
            }
            if (st != MPII_OK)
                set_err(err, err_cap, "the image did not arrive from rank 0", mpii_strerror(st));
            else if (image_st != MPII_OK)
                set_err(err, err_cap, "rank 0 cannot read the image", mpii_strerror(image_st));
        }
        if (st != MPII_OK)
            put_header(header, st, 0); /* tell the node why */
        /* the node: the header, so that its ranks can bound their wait */
        mpii_status nst = group_bcast(ops, t, MPII_GROUP_NODE, header, RUN_HEADER, timeout_s, NULL, NULL);
        mpii_status stage_st = st != MPII_OK ? st : image_st;
        if (stage_st == MPII_OK) {
            stage_st = leader_stage(stage_dir, image_path, bytes, len, timeout_s, for_this_step, job);
            if (stage_st != MPII_OK)
                set_err(err, err_cap, "this node's stage cannot be made", mpii_strerror(stage_st));
        }
        free(bytes);
        mpii_put_u32(result, (uint32_t)stage_st);
        mpii_put_u32(result + 4, (uint32_t)job->temporary);
        if (nst == MPII_OK)
            nst = group_bcast(ops, t, MPII_GROUP_NODE, result, RUN_RESULT, timeout_s, NULL, NULL);
        st = stage_st;
    } else {
        /* the node's other ranks: a header, then the result; no bytes */
        st = group_bcast(ops, t, MPII_GROUP_NODE, NULL, 0, 3.0 * timeout_s, &got, &got_len);
        if (st == MPII_OK)
            st = get_header(got, got_len, &image_st, &size);
        free(got);
        got = NULL;
        if (st == MPII_OK)
            st = group_bcast(ops, t, MPII_GROUP_NODE, NULL, 0, 2.0 * payload_wait(timeout_s, size), &got,
                             &got_len);
        if (st == MPII_OK && got_len != RUN_RESULT)
            st = MPII_ERR_CORRUPT;
        if (st != MPII_OK) {
            set_err(err, err_cap, "no word from this node's leader", mpii_strerror(st));
        } else {
            st = (mpii_status)mpii_get_u32(got);
            job->temporary = mpii_get_u32(got + 4) != 0;
            if (st != MPII_OK) {
                set_err(err, err_cap, "this node's leader could not stage the image", mpii_strerror(st));
                job->temporary = 0;
            }
        }
        free(got);
        if (st == MPII_OK && job->temporary) {
            char root[PATH_CAP];
            st = mpii_stage_image_root(stage_dir, image_path, root, sizeof root);
            if (st == MPII_OK)
                st = mpii_stage_register(root);
            if (st != MPII_OK) {
                set_err(err, err_cap, "cannot join this node's stage", mpii_strerror(st));
                job->temporary = 0;
            }
        }
    }
    /* every process of the step is registered before any can end */
    mpii_status bst = ops->barrier(t, timeout_s);
    (void)bst; /* a peer that is gone does not undo this node's stage */
    job->staged = st == MPII_OK;
    return st;
}
