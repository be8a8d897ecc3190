/* fabric.c — the transport skeleton of the fabric transports (ofi, ucx):
 * init, the forwarding of rank, size, node info, broadcasts and barriers to
 * the PMIx bootstrap (pmix_boot.h) and the tree (tree_bcast.h), finalize, and
 * the error-sentence helper they and the bootstrap share (fabric.h). Group
 * broadcasts map onto the tree's groups: MPII_GROUP_LEADERS is tree group 1
 * over the bootstrap's leader list, MPII_GROUP_NODE tree group 2 over this
 * node's ranks.
 *
 * A transport instance holds its driver, the bootstrap, the driver's p2p
 * layer and the tree over it. Teardown order: the tree first (it stops its
 * background progress thread, the only other user of the p2p layer, and
 * keeps whatever a pending operation may still touch), then the driver's
 * close, then the bootstrap's finalize. Library code never prints: errors are
 * return codes and, for init, a sentence. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fabric.h"
#include "tree_bcast.h"

/* Largest MPIIMPORT_CHUNK accepted: 1 GiB. */
#define MPII_FABRIC_MAX_CHUNK ((size_t)1 << 30)

struct mpii_transport {
    const mpii_fabric_driver *driver;
    mpii_pmix_boot *boot;
    mpii_p2p *p2p;         /* the driver's, NULL until opened */
    mpii_tree *tree;
    mpii_node_info node;
    const int *node_ranks; /* owned by boot */
    const int *leaders;    /* node.node_count world ranks, by node id; owned by boot */
    int rank;
    int size;
};

void mpii_fabric_set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, cap, fmt, ap); /* truncation is acceptable */
    va_end(ap);
    if (n < 0)
        err[0] = '\0';
}

/* Parses MPIIMPORT_CHUNK: decimal bytes with an optional K, M or G (binary)
 * suffix, 1 .. MPII_FABRIC_MAX_CHUNK. Unset or empty: 0 (the tree's default). */
static mpii_status read_chunk(const char *name, size_t *chunk, char *err, size_t err_cap)
{
    *chunk = 0;
    const char *s = getenv("MPIIMPORT_CHUNK");
    if (s == NULL || s[0] == '\0')
        return MPII_OK;
    if (!isdigit((unsigned char)s[0])) {
        mpii_fabric_set_err(err, err_cap,
                            "%s transport: MPIIMPORT_CHUNK='%.40s' is not a byte count", name, s);
        return MPII_ERR_INVALID;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s) {
        mpii_fabric_set_err(err, err_cap,
                            "%s transport: MPIIMPORT_CHUNK='%.40s' is not a byte count", name, s);
        return MPII_ERR_INVALID;
    }
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1ull << 10;
    else if (*end == 'm' || *end == 'M')
        mult = 1ull << 20;
    else if (*end == 'g' || *end == 'G')
        mult = 1ull << 30;
    if (mult != 1)
        end++;
    if (*end != '\0' || v == 0 || v > (unsigned long long)MPII_FABRIC_MAX_CHUNK / mult) {
        mpii_fabric_set_err(
            err, err_cap,
            "%s transport: MPIIMPORT_CHUNK='%.40s' must be 1 .. %zu bytes (K/M/G allowed)", name,
            s, MPII_FABRIC_MAX_CHUNK);
        return MPII_ERR_INVALID;
    }
    *chunk = (size_t)(v * mult);
    return MPII_OK;
}

void mpii_fabric_finalize(mpii_transport *t)
{
    if (t == NULL)
        return;
    /* The tree first: it stops its background thread, the only other user of
     * the p2p layer, and keeps whatever a pending operation may touch. */
    if (t->tree != NULL)
        mpii_tree_destroy(t->tree);
    t->tree = NULL;
    if (t->p2p != NULL)
        t->driver->close(t->p2p, t->boot);
    t->p2p = NULL;
    if (t->boot != NULL)
        mpii_pmix_boot_finalize(t->boot);
    free(t);
}

mpii_status mpii_fabric_init(const mpii_fabric_driver *driver,
                             const mpii_transport_options *options, mpii_transport **out,
                             char *err, size_t err_cap)
{
    if (driver == NULL || driver->open == NULL || driver->close == NULL) {
        mpii_fabric_set_err(err, err_cap, "fabric transport: no driver");
        return MPII_ERR_INVALID;
    }
    const char *name = driver->name != NULL ? driver->name : "fabric";
    if (out == NULL) {
        mpii_fabric_set_err(err, err_cap, "%s transport: no place for the transport handle",
                            name);
        return MPII_ERR_INVALID;
    }
    *out = NULL;
    int ranks_per_node = options != NULL ? options->ranks_per_node : 0;
    if (ranks_per_node < 0) {
        mpii_fabric_set_err(err, err_cap, "%s transport: ranks_per_node must be >= 0, got %d",
                            name, ranks_per_node);
        return MPII_ERR_INVALID;
    }
    size_t chunk = 0;
    mpii_status st = read_chunk(name, &chunk, err, err_cap);
    if (st != MPII_OK)
        return st;

    mpii_transport *t = calloc(1, sizeof *t);
    if (t == NULL) {
        mpii_fabric_set_err(err, err_cap, "%s transport: out of memory", name);
        return MPII_ERR_NOMEM;
    }
    t->driver = driver;
    st = mpii_pmix_boot_init(ranks_per_node, &t->boot, err, err_cap);
    if (st != MPII_OK) {
        free(t);
        return st;
    }
    t->rank = mpii_pmix_boot_rank(t->boot);
    t->size = mpii_pmix_boot_size(t->boot);
    if (t->size < 1 || t->size > MPII_FABRIC_MAX_RANKS || t->rank < 0 || t->rank >= t->size) {
        mpii_fabric_set_err(err, err_cap,
                            "%s transport: rank %d of %d is out of range (at most %ld ranks)",
                            name, t->rank, t->size, MPII_FABRIC_MAX_RANKS);
        st = MPII_ERR_TRANSPORT;
        goto fail;
    }
    st = mpii_pmix_boot_node(t->boot, &t->node, &t->node_ranks);
    if (st != MPII_OK) {
        mpii_fabric_set_err(err, err_cap, "%s transport: node grouping through PMIx failed: %s",
                            name, mpii_strerror(st));
        goto fail;
    }
    int leader_count = 0;
    st = mpii_pmix_boot_leaders(t->boot, &t->leaders, &leader_count);
    if (st == MPII_OK && (t->leaders == NULL || leader_count != t->node.node_count))
        st = MPII_ERR_CORRUPT;
    if (st != MPII_OK) {
        mpii_fabric_set_err(err, err_cap, "%s transport: node leaders through PMIx failed: %s",
                            name, mpii_strerror(st));
        goto fail;
    }
    const mpii_p2p_ops *ops = NULL;
    size_t max_chunk = 0;
    st = driver->open(t->boot, options, &ops, &t->p2p, &max_chunk, err, err_cap);
    if (st != MPII_OK) {
        t->p2p = NULL; /* the driver has released it */
        goto fail;
    }
    if (chunk == 0)
        chunk = MPII_TREE_DEFAULT_CHUNK;
    if (max_chunk != 0 && chunk > max_chunk)
        chunk = max_chunk;
    st = mpii_tree_create(ops, t->p2p, t->rank, t->size, chunk, &t->tree);
    if (st != MPII_OK) {
        t->tree = NULL;
        mpii_fabric_set_err(err, err_cap,
                            "%s transport: setting up the broadcast tree failed: %s", name,
                            mpii_strerror(st));
        goto fail;
    }
    *out = t;
    return MPII_OK;

fail:
    mpii_fabric_finalize(t);
    return st;
}

int mpii_fabric_rank(const mpii_transport *t) { return t != NULL ? t->rank : -1; }

int mpii_fabric_size(const mpii_transport *t) { return t != NULL ? t->size : -1; }

mpii_status mpii_fabric_node_info(const mpii_transport *t, mpii_node_info *info)
{
    if (t == NULL || info == NULL)
        return MPII_ERR_INVALID;
    *info = t->node;
    return MPII_OK;
}

mpii_status mpii_fabric_bcast_start(mpii_transport *t, int root, const void *buf, size_t len,
                                    mpii_bcast_req **req)
{
    if (t == NULL || req == NULL || root < 0 || root >= t->size)
        return MPII_ERR_INVALID;
    return mpii_tree_bcast_start(t->tree, root, buf, len, req);
}

mpii_status mpii_fabric_group_bcast_start(mpii_transport *t, int group, const void *buf,
                                          size_t len, mpii_bcast_req **req)
{
    if (req != NULL)
        *req = NULL;
    if (t == NULL || req == NULL)
        return MPII_ERR_INVALID;
    switch (group) {
    case MPII_GROUP_LEADERS:
        if (t->node.local_rank != 0)
            return MPII_ERR_INVALID; /* leaders only */
        return mpii_tree_group_bcast_start(t->tree, MPII_GROUP_LEADERS, t->leaders,
                                           t->node.node_count, buf, len, req);
    case MPII_GROUP_NODE:
        return mpii_tree_group_bcast_start(t->tree, MPII_GROUP_NODE, t->node_ranks,
                                           t->node.local_size, buf, len, req);
    default: return MPII_ERR_INVALID;
    }
}

mpii_status mpii_fabric_bcast_wait(mpii_transport *t, mpii_bcast_req *req, double timeout_s,
                                   void **buf, size_t *len)
{
    if (t == NULL || req == NULL)
        return MPII_ERR_INVALID;
    return mpii_tree_bcast_wait(t->tree, req, timeout_s, buf, len);
}

mpii_status mpii_fabric_barrier(mpii_transport *t, double timeout_s)
{
    if (t == NULL)
        return MPII_ERR_INVALID;
    return mpii_tree_barrier(t->tree, NULL, t->size, timeout_s);
}

mpii_status mpii_fabric_node_barrier(mpii_transport *t, double timeout_s)
{
    if (t == NULL)
        return MPII_ERR_INVALID;
    return mpii_tree_barrier(t->tree, t->node_ranks, t->node.local_size, timeout_s);
}
