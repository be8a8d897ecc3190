/* pmix_boot.c — the PMIx bootstrap shared by the fabric transports (ofi,
 * ucx): who we are, who shares our node, and everyone's endpoint address.
 *
 * The fabric transports have no MPI to ask, so they ask the launcher's PMIx
 * server (mpirun, prterun, srun --mpi=pmix) directly:
 *   rank        the rank PMIx_Init reports for this process;
 *   size        PMIX_JOB_SIZE of the namespace (wildcard rank);
 *   node        PMIX_LOCAL_PEERS (comma-separated ranks on this node) gives
 *               the node's members. Nodes are numbered 0..n-1 in the order of
 *               their lowest rank (as the mpi transport numbers them), which
 *               needs every rank's node: PMIX_NODEID of each rank from the job
 *               map, or, failing that, PMIx_Resolve_nodes + PMIx_Resolve_peers.
 *               Neither needs a fence: the launcher gives every client the job
 *               map, so node information is complete when init returns.
 *               ranks_per_node > 0 replaces all this with simulated nodes of
 *               consecutive ranks.
 *   leaders     the lowest rank of every node, by node id (so ascending):
 *               from the same numbering, or i * ranks_per_node when simulated.
 *   addresses   PMIx_Put (PMIX_GLOBAL) of a byte object under
 *               "mpiimport.<name>.addr", PMIx_Commit, PMIx_Fence over the
 *               namespace with PMIX_COLLECT_DATA, then PMIx_Get per rank. A
 *               later exchange under the same key (a second transport
 *               instance) overwrites the earlier one; the fences order them.
 *
 * PMIx_Init is reference counted inside the PMIx client library, so every
 * boot pairs its own PMIx_Init with one PMIx_Finalize, whoever else (Open MPI,
 * mpi4py, a second instance) has initialised PMIx in the same process.
 * Without a server (a plain run outside a launcher) PMIx_Init fails at once
 * and init says so in a sentence. The fence carries PMIX_TIMEOUT so that a
 * rank that never arrives does not block the others for ever (where the
 * server honours it). Library code never prints. */
#include <pmix.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fabric.h"
#include "pmix_boot.h"

/* Bound on the address-exchange fence, seconds. */
#define MPII_PMIX_FENCE_TIMEOUT_S 300

struct mpii_pmix_boot {
    pmix_proc_t me;
    int rank;
    int size;
    mpii_node_info node;
    int *node_ranks; /* node.local_size world ranks, ascending */
    int *leaders;    /* node.node_count world ranks: leaders[i] is node i's lowest */
    int host_ranks;  /* ranks the launcher placed on this host (PMIX_LOCAL_SIZE), or -1 */
};

/* Reads an integer-typed PMIx value as an int in 0..INT_MAX. */
static int value_to_int(const pmix_value_t *v, int *out)
{
    uint64_t n;
    switch (v->type) {
    case PMIX_UINT32: n = v->data.uint32; break;
    case PMIX_UINT16: n = v->data.uint16; break;
    case PMIX_UINT8: n = v->data.uint8; break;
    case PMIX_UINT64: n = v->data.uint64; break;
    case PMIX_SIZE: n = v->data.size; break;
    case PMIX_PROC_RANK: n = v->data.rank; break;
    case PMIX_INT:
        if (v->data.integer < 0)
            return 0;
        n = (uint64_t)v->data.integer;
        break;
    case PMIX_INT32:
        if (v->data.int32 < 0)
            return 0;
        n = (uint64_t)v->data.int32;
        break;
    case PMIX_INT64:
        if (v->data.int64 < 0)
            return 0;
        n = (uint64_t)v->data.int64;
        break;
    default: return 0;
    }
    if (n > (uint64_t)INT_MAX)
        return 0;
    *out = (int)n;
    return 1;
}

/* PMIx_Get of an integer key. optional: look only in the local data store
 * (job-map keys are there; this never waits on the server). */
static pmix_status_t get_int(const pmix_proc_t *proc, const char *key, int optional, int *out)
{
    pmix_info_t info;
    bool yes = true;
    PMIX_INFO_CONSTRUCT(&info);
    PMIX_INFO_LOAD(&info, PMIX_OPTIONAL, &yes, PMIX_BOOL);
    pmix_value_t *v = NULL;
    pmix_status_t rc = PMIx_Get(proc, key, optional ? &info : NULL, optional ? 1 : 0, &v);
    PMIX_INFO_DESTRUCT(&info);
    if (rc != PMIX_SUCCESS)
        return rc;
    if (v == NULL)
        return PMIX_ERR_NOT_FOUND;
    int ok = value_to_int(v, out);
    PMIX_VALUE_RELEASE(v);
    return ok ? PMIX_SUCCESS : PMIX_ERR_BAD_PARAM;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Parses PMIX_LOCAL_PEERS ("0,1,5"; ranges "5-7" are accepted too) into a
 * sorted array of distinct ranks < size. */
static mpii_status parse_peers(const char *s, int size, int **out, int *count)
{
    int *r = malloc((size_t)size * sizeof *r);
    if (r == NULL)
        return MPII_ERR_NOMEM;
    int n = 0;
    const char *p = s;
    while (*p != '\0') {
        char *end = NULL;
        errno = 0;
        long a = strtol(p, &end, 10);
        if (end == p || errno != 0 || a < 0 || a >= size)
            goto bad;
        long b = a;
        p = end;
        if (*p == '-') {
            p++;
            errno = 0;
            b = strtol(p, &end, 10);
            if (end == p || errno != 0 || b < a || b >= size)
                goto bad;
            p = end;
        }
        for (long k = a; k <= b; k++) {
            if (n >= size)
                goto bad; /* more entries than ranks: duplicates */
            r[n++] = (int)k;
        }
        if (*p == ',')
            p++;
        else if (*p != '\0')
            goto bad;
    }
    if (n == 0)
        goto bad;
    qsort(r, (size_t)n, sizeof *r, cmp_int);
    for (int i = 1; i < n; i++)
        if (r[i] == r[i - 1])
            goto bad;
    *out = r;
    *count = n;
    return MPII_OK;
bad:
    free(r);
    return MPII_ERR_CORRUPT;
}

/* node_of[r] for every rank from PMIX_NODEID in the job map. */
static int nodes_from_nodeid(const mpii_pmix_boot *b, int *node_of)
{
    pmix_proc_t p;
    for (int r = 0; r < b->size; r++) {
        PMIX_LOAD_PROCID(&p, b->me.nspace, (pmix_rank_t)r);
        if (get_int(&p, PMIX_NODEID, 1, &node_of[r]) != PMIX_SUCCESS)
            return 0;
    }
    return 1;
}

/* node_of[r] for every rank from the node list and each node's peers. */
static int nodes_from_resolve(const mpii_pmix_boot *b, int *node_of)
{
    char *list = NULL;
    if (PMIx_Resolve_nodes(b->me.nspace, &list) != PMIX_SUCCESS || list == NULL) {
        free(list);
        return 0;
    }
    for (int r = 0; r < b->size; r++)
        node_of[r] = -1;
    int ok = 1, index = 0;
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name != NULL && ok;
         name = strtok_r(NULL, ",", &save), index++) {
        pmix_proc_t *procs = NULL;
        size_t n = 0;
        if (PMIx_Resolve_peers(name, b->me.nspace, &procs, &n) != PMIX_SUCCESS) {
            ok = 0;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (!PMIX_CHECK_NSPACE(procs[i].nspace, b->me.nspace))
                continue;
            if (procs[i].rank >= (pmix_rank_t)b->size) {
                ok = 0;
                break;
            }
            node_of[procs[i].rank] = index;
        }
        if (procs != NULL)
            PMIX_PROC_FREE(procs, n);
    }
    free(list);
    for (int r = 0; r < b->size && ok; r++)
        if (node_of[r] < 0)
            ok = 0;
    return ok;
}

/* Real nodes: members from PMIX_LOCAL_PEERS (or, if the server lacks it,
 * from the job map), numbering from the job map. */
static mpii_status real_nodes(mpii_pmix_boot *b, char *err, size_t err_cap)
{
    int *node_of = malloc((size_t)b->size * sizeof *node_of);
    if (node_of == NULL) {
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: out of memory");
        return MPII_ERR_NOMEM;
    }
    if (!nodes_from_nodeid(b, node_of) && !nodes_from_resolve(b, node_of)) {
        free(node_of);
        mpii_fabric_set_err(err, err_cap,
                            "PMIx bootstrap: the launcher gives neither PMIX_NODEID per rank nor a "
                            "resolvable node list, so nodes cannot be numbered "
                            "(MPIIMPORT_RANKS_PER_NODE=N simulates nodes instead)");
        return MPII_ERR_TRANSPORT;
    }
    const int mine = node_of[b->rank];

    /* Members: PMIX_LOCAL_PEERS, checked against the job map. */
    pmix_proc_t wild;
    PMIX_LOAD_PROCID(&wild, b->me.nspace, PMIX_RANK_WILDCARD);
    pmix_value_t *v = NULL;
    mpii_status st = MPII_OK;
    if (PMIx_Get(&wild, PMIX_LOCAL_PEERS, NULL, 0, &v) == PMIX_SUCCESS && v != NULL &&
        v->type == PMIX_STRING && v->data.string != NULL) {
        st = parse_peers(v->data.string, b->size, &b->node_ranks, &b->node.local_size);
        if (st != MPII_OK)
            mpii_fabric_set_err(err, err_cap,
                                "PMIx bootstrap: cannot read PMIX_LOCAL_PEERS '%.200s'",
                                v->data.string);
    } else {
        int n = 0;
        for (int r = 0; r < b->size; r++)
            n += node_of[r] == mine;
        b->node_ranks = malloc((size_t)n * sizeof *b->node_ranks);
        if (b->node_ranks == NULL) {
            st = MPII_ERR_NOMEM;
            mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: out of memory");
        } else {
            b->node.local_size = 0;
            for (int r = 0; r < b->size; r++)
                if (node_of[r] == mine)
                    b->node_ranks[b->node.local_size++] = r;
        }
    }
    if (v != NULL)
        PMIX_VALUE_RELEASE(v);
    if (st != MPII_OK) {
        free(node_of);
        return st;
    }
    int found = 0;
    for (int i = 0; i < b->node.local_size; i++) {
        if (node_of[b->node_ranks[i]] != mine) {
            free(node_of);
            mpii_fabric_set_err(
                err, err_cap,
                "PMIx bootstrap: PMIX_LOCAL_PEERS lists rank %d, which the job map places "
                "on another node",
                b->node_ranks[i]);
            return MPII_ERR_CORRUPT;
        }
        if (b->node_ranks[i] == b->rank) {
            b->node.local_rank = i;
            found = 1;
        }
    }
    if (!found) {
        free(node_of);
        mpii_fabric_set_err(
            err, err_cap, "PMIx bootstrap: PMIX_LOCAL_PEERS does not list this rank (%d)", b->rank);
        return MPII_ERR_CORRUPT;
    }

    /* Number nodes by their lowest rank: sort (node key, rank) pairs; the
     * first pair of each key holds that node's lowest rank. */
    uint64_t *pairs = malloc((size_t)b->size * sizeof *pairs);
    if (pairs == NULL) {
        free(node_of);
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: out of memory");
        return MPII_ERR_NOMEM;
    }
    for (int r = 0; r < b->size; r++)
        pairs[r] = ((uint64_t)(unsigned)node_of[r] << 32) | (uint64_t)(unsigned)r;
    qsort(pairs, (size_t)b->size, sizeof *pairs, cmp_u64);
    free(node_of);
    /* The leaders: each node's lowest rank, then in node-id order. */
    b->leaders = malloc((size_t)b->size * sizeof *b->leaders);
    if (b->leaders == NULL) {
        free(pairs);
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: out of memory");
        return MPII_ERR_NOMEM;
    }
    int count = 0, before = 0;
    for (int i = 0; i < b->size; i++) {
        if (i > 0 && (pairs[i] >> 32) == (pairs[i - 1] >> 32))
            continue;
        int lowest = (int)(pairs[i] & 0xffffffffu);
        b->leaders[count++] = lowest;
        if (lowest < b->node_ranks[0])
            before++;
    }
    free(pairs);
    qsort(b->leaders, (size_t)count, sizeof *b->leaders, cmp_int);
    b->node.node_count = count;
    b->node.node_id = before;
    return MPII_OK;
}

static mpii_status simulated_nodes(mpii_pmix_boot *b, int ranks_per_node)
{
    int first = (b->rank / ranks_per_node) * ranks_per_node;
    int n = b->size - first < ranks_per_node ? b->size - first : ranks_per_node;
    int nodes = (b->size - 1) / ranks_per_node + 1; /* no overflow near INT_MAX */
    b->node_ranks = malloc((size_t)n * sizeof *b->node_ranks);
    b->leaders = malloc((size_t)nodes * sizeof *b->leaders);
    if (b->node_ranks == NULL || b->leaders == NULL)
        return MPII_ERR_NOMEM; /* finalize frees whichever was allocated */
    for (int i = 0; i < n; i++)
        b->node_ranks[i] = first + i;
    for (int i = 0; i < nodes; i++)
        b->leaders[i] = i * ranks_per_node;
    b->node.node_id = b->rank / ranks_per_node;
    b->node.node_count = nodes;
    b->node.local_rank = b->rank - first;
    b->node.local_size = n;
    return MPII_OK;
}

mpii_status mpii_pmix_boot_init(int ranks_per_node, mpii_pmix_boot **out, char *err,
                                size_t err_cap)
{
    if (out == NULL || ranks_per_node < 0) {
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: invalid arguments");
        return MPII_ERR_INVALID;
    }
    *out = NULL;
    mpii_pmix_boot *b = calloc(1, sizeof *b);
    if (b == NULL) {
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: out of memory");
        return MPII_ERR_NOMEM;
    }
    PMIX_PROC_CONSTRUCT(&b->me);
    pmix_status_t rc = PMIx_Init(&b->me, NULL, 0);
    if (rc != PMIX_SUCCESS) {
        free(b);
        mpii_fabric_set_err(err, err_cap,
                            "PMIx_Init failed (%s): no PMIx server to connect to; run under a PMIx "
                            "launcher such as mpirun, prterun or srun --mpi=pmix",
                            PMIx_Error_string(rc));
        return MPII_ERR_TRANSPORT;
    }
    /* From here on, failures go through mpii_pmix_boot_finalize. */
    mpii_status st = MPII_ERR_TRANSPORT;
    pmix_proc_t wild;
    PMIX_LOAD_PROCID(&wild, b->me.nspace, PMIX_RANK_WILDCARD);
    if ((rc = get_int(&wild, PMIX_JOB_SIZE, 0, &b->size)) != PMIX_SUCCESS) {
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: PMIx_Get(PMIX_JOB_SIZE) failed: %s",
                            PMIx_Error_string(rc));
        goto fail;
    }
    if (b->me.rank >= (pmix_rank_t)INT_MAX || b->size < 1 || (int)b->me.rank >= b->size) {
        mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: rank %lu outside a job of %d",
                            (unsigned long)b->me.rank, b->size);
        goto fail;
    }
    b->rank = (int)b->me.rank;
    if (get_int(&wild, PMIX_LOCAL_SIZE, 0, &b->host_ranks) != PMIX_SUCCESS)
        b->host_ranks = -1; /* unknown: only a provider preference depends on it */
    if (ranks_per_node > 0) {
        st = simulated_nodes(b, ranks_per_node);
        if (st != MPII_OK) {
            mpii_fabric_set_err(err, err_cap, "PMIx bootstrap: out of memory");
            goto fail;
        }
    } else {
        st = real_nodes(b, err, err_cap);
        if (st != MPII_OK)
            goto fail;
    }
    *out = b;
    return MPII_OK;
fail:
    mpii_pmix_boot_finalize(b);
    return st != MPII_OK ? st : MPII_ERR_TRANSPORT;
}

int mpii_pmix_boot_rank(const mpii_pmix_boot *b) { return b != NULL ? b->rank : -1; }

int mpii_pmix_boot_size(const mpii_pmix_boot *b) { return b != NULL ? b->size : -1; }

int mpii_pmix_boot_all_on_host(const mpii_pmix_boot *b)
{
    return b != NULL && b->host_ranks == b->size;
}

mpii_status mpii_pmix_boot_node(const mpii_pmix_boot *b, mpii_node_info *info,
                                const int **node_ranks)
{
    if (b == NULL)
        return MPII_ERR_INVALID;
    if (info != NULL)
        *info = b->node;
    if (node_ranks != NULL)
        *node_ranks = b->node_ranks;
    return MPII_OK;
}

mpii_status mpii_pmix_boot_leaders(const mpii_pmix_boot *b, const int **leaders, int *count)
{
    if (b == NULL || leaders == NULL || count == NULL)
        return MPII_ERR_INVALID;
    *leaders = b->leaders;
    *count = b->node.node_count;
    return MPII_OK;
}

mpii_status mpii_pmix_boot_exchange(mpii_pmix_boot *b, const char *name, const void *addr,
                                    size_t addr_len, void ***addrs, size_t **lens)
{
    if (b == NULL || name == NULL || (addr == NULL && addr_len > 0) || addrs == NULL ||
        lens == NULL)
        return MPII_ERR_INVALID;
    *addrs = NULL;
    *lens = NULL;
    char key[PMIX_MAX_KEYLEN + 1];
    int n = snprintf(key, sizeof key, "mpiimport.%s.addr", name);
    if (n < 0 || (size_t)n >= sizeof key)
        return MPII_ERR_TOOLONG;

    pmix_value_t val;
    PMIX_VALUE_CONSTRUCT(&val);
    val.type = PMIX_BYTE_OBJECT;
    /* PMIx_Put copies the bytes; the cast only satisfies the struct's type. */
    val.data.bo.bytes = (char *)(uintptr_t)addr;
    val.data.bo.size = addr_len;
    if (PMIx_Put(PMIX_GLOBAL, key, &val) != PMIX_SUCCESS)
        return MPII_ERR_TRANSPORT;
    if (PMIx_Commit() != PMIX_SUCCESS)
        return MPII_ERR_TRANSPORT;

    pmix_info_t info[2];
    bool yes = true;
    int timeout = MPII_PMIX_FENCE_TIMEOUT_S;
    PMIX_INFO_CONSTRUCT(&info[0]);
    PMIX_INFO_CONSTRUCT(&info[1]);
    PMIX_INFO_LOAD(&info[0], PMIX_COLLECT_DATA, &yes, PMIX_BOOL);
    PMIX_INFO_LOAD(&info[1], PMIX_TIMEOUT, &timeout, PMIX_INT);
    pmix_proc_t wild;
    PMIX_LOAD_PROCID(&wild, b->me.nspace, PMIX_RANK_WILDCARD);
    pmix_status_t rc = PMIx_Fence(&wild, 1, info, 2);
    PMIX_INFO_DESTRUCT(&info[0]);
    PMIX_INFO_DESTRUCT(&info[1]);
    if (rc != PMIX_SUCCESS)
        return rc == PMIX_ERR_TIMEOUT ? MPII_ERR_TIMEOUT : MPII_ERR_TRANSPORT;

    void **a = calloc((size_t)b->size, sizeof *a);
    size_t *l = calloc((size_t)b->size, sizeof *l);
    if (a == NULL || l == NULL) {
        free(a);
        free(l);
        return MPII_ERR_NOMEM;
    }
    mpii_status st = MPII_OK;
    for (int r = 0; r < b->size && st == MPII_OK; r++) {
        pmix_proc_t p;
        PMIX_LOAD_PROCID(&p, b->me.nspace, (pmix_rank_t)r);
        pmix_value_t *v = NULL;
        rc = PMIx_Get(&p, key, NULL, 0, &v);
        if (rc != PMIX_SUCCESS || v == NULL) {
            st = MPII_ERR_TRANSPORT;
        } else if (v->type != PMIX_BYTE_OBJECT || (v->data.bo.size > 0 && v->data.bo.bytes == NULL)) {
            st = MPII_ERR_CORRUPT;
        } else {
            l[r] = v->data.bo.size;
            a[r] = malloc(l[r] > 0 ? l[r] : 1);
            if (a[r] == NULL)
                st = MPII_ERR_NOMEM;
            else if (l[r] > 0)
                memcpy(a[r], v->data.bo.bytes, l[r]);
        }
        if (v != NULL)
            PMIX_VALUE_RELEASE(v);
    }
    if (st != MPII_OK) {
        mpii_pmix_boot_free_addrs(b, a, l);
        return st;
    }
    *addrs = a;
    *lens = l;
    return MPII_OK;
}

void mpii_pmix_boot_free_addrs(const mpii_pmix_boot *b, void **addrs, size_t *lens)
{
    if (addrs != NULL && b != NULL)
        for (int r = 0; r < b->size; r++)
            free(addrs[r]);
    free(addrs);
    free(lens);
}

void mpii_pmix_boot_finalize(mpii_pmix_boot *b)
{
    if (b == NULL)
        return;
    /* Pairs with this boot's PMIx_Init; the library counts references, so
     * this only ends PMIx when nobody else in the process still uses it. */
    (void)PMIx_Finalize(NULL, 0); /* nothing left to report an error to */
    free(b->node_ranks);
    free(b->leaders);
    free(b);
}
