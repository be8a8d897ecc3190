/* transport_self.c — the one-process transport: rank 0 of 1, broadcasts that
 * deliver nothing, barriers that return at once. It lets the core run without
 * any parallel runtime: `python3 -m mpiimport pack` records an application's
 * imports with it, and tests drive the root's code path with it. Always
 * compiled in (it needs nothing); listed after the configured transports. */
#include <stdlib.h>

#include "mpiimport/transport.h"

struct mpii_transport {
    int unused;
};

struct mpii_bcast_req {
    size_t len;
};

static mpii_status self_init(const mpii_transport_options *options, mpii_transport **out, char *err,
                             size_t err_cap)
{
    (void)options;
    (void)err;
    (void)err_cap;
    *out = calloc(1, sizeof **out);
    return *out ? MPII_OK : MPII_ERR_NOMEM;
}

static int self_rank(const mpii_transport *t) { (void)t; return 0; }
static int self_size(const mpii_transport *t) { (void)t; return 1; }

static mpii_status self_node_info(const mpii_transport *t, mpii_node_info *info)
{
    (void)t;
    *info = (mpii_node_info){0, 1, 0, 1};
    return MPII_OK;
}

static mpii_status self_bcast_start(mpii_transport *t, int root, const void *buf, size_t len,
                                    mpii_bcast_req **req)
{
    (void)t;
    (void)buf;
    if (root != 0)
        return MPII_ERR_INVALID;
    *req = malloc(sizeof **req);
    if (*req == NULL)
        return MPII_ERR_NOMEM;
    (*req)->len = len;
    return MPII_OK;
}

static mpii_status self_group_bcast_start(mpii_transport *t, int group, const void *buf,
                                          size_t len, mpii_bcast_req **req)
{
    if (group != MPII_GROUP_LEADERS && group != MPII_GROUP_NODE)
        return MPII_ERR_INVALID;
    return self_bcast_start(t, 0, buf, len, req);
}

static mpii_status self_bcast_wait(mpii_transport *t, mpii_bcast_req *req, double timeout_s,
                                   void **buf, size_t *len)
{
    (void)t;
    (void)timeout_s;
    if (buf != NULL)
        *buf = NULL;
    if (len != NULL)
        *len = req->len;
    free(req);
    return MPII_OK;
}

static mpii_status self_barrier(mpii_transport *t, double timeout_s)
{
    (void)t;
    (void)timeout_s;
    return MPII_OK;
}

static void self_finalize(mpii_transport *t) { free(t); }

const mpii_transport_ops mpii_self_ops = {
    .name = "self",
    .init = self_init,
    .rank = self_rank,
    .size = self_size,
    .node_info = self_node_info,
    .bcast_start = self_bcast_start,
    .bcast_wait = self_bcast_wait,
    .group_bcast_start = self_group_bcast_start,
    .barrier = self_barrier,
    .node_barrier = self_barrier,
    .finalize = self_finalize,
};
