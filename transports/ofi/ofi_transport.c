/* ofi_transport.c — the "ofi" transport: broadcasts and barriers over
 * libfabric tagged messages, bootstrapped through PMIx, with no MPI.
 *
 * This file exports one symbol, mpii_ofi_ops, which the generated registry
 * lists. It provides the point-to-point layer of p2p.h over one libfabric
 * endpoint, as the driver of the shared fabric skeleton (fabric.h: init,
 * MPIIMPORT_CHUNK, forwarding, finalize order), and leaves the broadcast and
 * barrier algorithms to the shared tree (tree_bcast.h), and rank, node
 * grouping and address exchange to the shared PMIx bootstrap (pmix_boot.h).
 *
 * Set-up. fi_getinfo asks for a reliable datagram endpoint (FI_EP_RDM) with
 * tagged messages (FI_TAGGED), offering the FI_CONTEXT/FI_CONTEXT2 modes (every
 * operation carries a struct fi_context2) and the FI_MR_LOCAL family of memory
 * registration modes. libfabric itself applies FI_PROVIDER (and its other FI_*
 * variables) to the answer, so users pick providers as with any libfabric
 * program; the first answer is used. With FI_PROVIDER unset and every rank on
 * this host (PMIX_LOCAL_SIZE == job size), the shm provider is asked for first
 * (see p2p_open), since libfabric's first answer is often tcp. Then: fabric, domain, a completion queue
 * (FI_CQ_FORMAT_TAGGED, polled), an address vector (FI_AV_TABLE), the
 * endpoint; its fi_getname goes through the PMIx exchange and every rank's
 * name is fi_av_insert'ed.
 *
 * Tags. Receives take any source (FI_DIRECTED_RECV is not required); the
 * wire tag is the sender's rank in the top OFI_RANK_BITS bits above the
 * caller's MPII_P2P_TAG_BITS-bit tag, and a receive matches all 64 bits.
 *
 * Requests. isend/irecv post fi_tsend/fi_trecv. When the provider answers
 * -FI_EAGAIN the request is queued and posted again from progress (after the
 * completion queue has been read), in order, so posting never blocks.
 * Completions and errors (fi_cq_readerr) are read from the completion queue
 * and marked on the request found through its context; test reports and frees
 * it. A receive longer than its buffer is MPII_ERR_CORRUPT,
 * other errors MPII_ERR_TRANSPORT. With FI_MR_LOCAL every non-empty buffer is
 * registered (fi_mr_reg) for the life of its operation. Messages larger than
 * the provider's max_msg_size are refused, so the tree's chunk is capped at
 * it; live requests sit on a list so that finalize can free whatever the tree
 * left pending.
 *
 * Threads. Once the tree exists, every p2p call comes from the tree, under its
 * mutex, from the caller's thread or the tree's background progress thread
 * (tree_bcast.h): serialised, which is what FI_THREAD_DOMAIN asks for.
 *
 * Finalize destroys the tree first (stopping its thread; it leaves alone any
 * memory a pending operation may still touch), then closes the endpoint
 * (which drops its pending operations), the requests' registrations, the
 * address vector, completion queue, domain and fabric, and finalises the
 * PMIx bootstrap.
 *
 * options->before_finalize is never called: nothing shuts this transport's
 * runtime down under it (an application's MPI_Finalize only drops Open MPI's
 * reference to PMIx, and libfabric is ours), so the session ends when the
 * caller ends it.
 *
 * MPIIMPORT_CHUNK (bytes, optional K/M/G suffix; read by fabric.c) sets the
 * tree's pipeline chunk, capped at max_msg_size. Library code never prints:
 * errors are return codes and, for init, a sentence. */
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/status.h"
#include "mpiimport/transport.h"
#include "fabric.h"
#include "p2p.h"
#include "pmix_boot.h"
#include "tree_bcast.h"

/* Wire tag: sender rank in the top 24 bits (16 M ranks), caller's tag below. */
#define OFI_RANK_BITS (64u - MPII_P2P_TAG_BITS)
#define OFI_TAG_MASK ((UINT64_C(1) << MPII_P2P_TAG_BITS) - 1u)
/* Completion entries read per fi_cq_read, and reads per progress call. */
#define OFI_CQ_BATCH 16
#define OFI_CQ_ROUNDS 64

struct mpii_p2p_req {
    struct fi_context2 ctx;            /* first: a CQ entry's op_context is &ctx */
    struct mpii_p2p_req *prev, *next;  /* the p2p's list of live requests */
    struct mpii_p2p_req *queue_next;   /* the queue of requests not yet posted */
    int is_recv;
    int queued;        /* the provider has not accepted it yet (-FI_EAGAIN) */
    int done;
    mpii_status status; /* once done */
    int peer;
    uint64_t wire_tag;
    void *buf;
    size_t len;
    size_t got;         /* bytes that arrived (receives) or len (sends), once done */
    struct fid_mr *mr;  /* FI_MR_LOCAL registration, or NULL */
};

struct mpii_p2p {
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_ep *ep;
    int rank;
    int size;
    int mr_local;          /* the provider needs local buffers registered */
    uint64_t next_mr_key;  /* requested keys, when the provider does not pick them */
    size_t max_msg;
    fi_addr_t *peers;      /* size entries from fi_av_insert */
    mpii_status error;     /* sticky failure of the completion queue itself */
    struct mpii_p2p_req *live;
    struct mpii_p2p_req *queue_head, *queue_tail;
};

/* ---- helpers ------------------------------------------------------------ */

static void close_fid(struct fid *fid)
{
    if (fid != NULL)
        (void)fi_close(fid); /* nothing useful can be done if closing fails */
}

/* ---- requests ----------------------------------------------------------- */

static void req_unlink_free(struct mpii_p2p *p, struct mpii_p2p_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        p->live = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    if (r->mr != NULL)
        close_fid(&r->mr->fid);
    free(r);
}

static void req_complete(struct mpii_p2p_req *r, mpii_status st)
{
    if (r->done)
        return;
    r->done = 1;
    r->status = st;
}

/* Hands r to the provider: 0, -FI_EAGAIN (try later) or another error. */
static ssize_t req_post(struct mpii_p2p *p, struct mpii_p2p_req *r)
{
    void *desc = r->mr != NULL ? fi_mr_desc(r->mr) : NULL;
    if (r->is_recv)
        return fi_trecv(p->ep, r->buf, r->len, desc, FI_ADDR_UNSPEC, r->wire_tag, 0, &r->ctx);
    return fi_tsend(p->ep, r->buf, r->len, desc, p->peers[r->peer], r->wire_tag, &r->ctx);
}

/* Reads the completion queue until it is empty (bounded). */
static mpii_status drain_cq(struct mpii_p2p *p)
{
    if (p->error != MPII_OK)
        return p->error;
    struct fi_cq_tagged_entry e[OFI_CQ_BATCH];
    for (int round = 0; round < OFI_CQ_ROUNDS; round++) {
        ssize_t n = fi_cq_read(p->cq, e, OFI_CQ_BATCH);
        if (n == -FI_EAGAIN)
            return MPII_OK;
        if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry ee;
            memset(&ee, 0, sizeof ee);
            ssize_t rc = fi_cq_readerr(p->cq, &ee, 0);
            if (rc == -FI_EAGAIN)
                continue;
            if (rc < 0 || ee.op_context == NULL) {
                p->error = MPII_ERR_TRANSPORT; /* an error that names no operation */
                return p->error;
            }
            struct mpii_p2p_req *r = ee.op_context;
            req_complete(r, ee.err == FI_ETRUNC ? MPII_ERR_CORRUPT : MPII_ERR_TRANSPORT);
            continue;
        }
        if (n < 0) {
            p->error = MPII_ERR_TRANSPORT;
            return p->error;
        }
        for (ssize_t i = 0; i < n; i++) {
            struct mpii_p2p_req *r = e[i].op_context;
            if (r == NULL)
                continue;
            r->got = r->is_recv ? e[i].len : r->len;
            req_complete(r, r->is_recv && e[i].len > r->len ? MPII_ERR_CORRUPT : MPII_OK);
        }
        if (n < OFI_CQ_BATCH)
            return MPII_OK;
    }
    return MPII_OK;
}

/* Posts the queued requests in order until the provider pushes back. */
static void flush_queue(struct mpii_p2p *p)
{
    while (p->queue_head != NULL) {
        struct mpii_p2p_req *r = p->queue_head;
        ssize_t rc = req_post(p, r);
        if (rc == -FI_EAGAIN)
            return;
        p->queue_head = r->queue_next;
        if (p->queue_head == NULL)
            p->queue_tail = NULL;
        r->queue_next = NULL;
        r->queued = 0;
        if (rc != 0)
            req_complete(r, MPII_ERR_TRANSPORT);
    }
}

static mpii_status ofi_progress(mpii_p2p *p)
{
    if (p == NULL)
        return MPII_ERR_INVALID;
    mpii_status st = drain_cq(p);
    if (st != MPII_OK)
        return st;
    flush_queue(p);
    return MPII_OK;
}

/* Common part of isend and irecv. */
static mpii_status start_op(struct mpii_p2p *p, int is_recv, int peer, uint64_t tag, void *buf,
                            size_t len, mpii_p2p_req **out)
{
    if (p == NULL || out == NULL)
        return MPII_ERR_INVALID;
    *out = NULL;
    if (peer < 0 || peer >= p->size || (tag & ~OFI_TAG_MASK) != 0 || (buf == NULL && len > 0) ||
        len > p->max_msg)
        return MPII_ERR_INVALID;
    if (p->error != MPII_OK)
        return p->error;
    struct mpii_p2p_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return MPII_ERR_NOMEM;
    r->is_recv = is_recv;
    r->peer = peer;
    r->wire_tag = ((uint64_t)(is_recv ? peer : p->rank) << MPII_P2P_TAG_BITS) | tag;
    r->buf = buf;
    r->len = len;
    r->status = MPII_OK;
    if (p->mr_local && len > 0) {
        int rc = fi_mr_reg(p->domain, buf, len, is_recv ? FI_RECV : FI_SEND, 0,
                           p->next_mr_key++, 0, &r->mr, NULL);
        if (rc != 0) {
            free(r);
            return MPII_ERR_TRANSPORT;
        }
    }
    r->next = p->live;
    if (p->live != NULL)
        p->live->prev = r;
    p->live = r;

    ssize_t rc = -FI_EAGAIN;
    if (p->queue_head == NULL) {
        rc = req_post(p, r);
        if (rc == -FI_EAGAIN && drain_cq(p) == MPII_OK)
            rc = req_post(p, r); /* the provider may have freed resources */
    }
    if (rc == -FI_EAGAIN) {
        /* Keep the order of posting: behind whatever is already queued. */
        r->queued = 1;
        if (p->queue_tail != NULL)
            p->queue_tail->queue_next = r;
        else
            p->queue_head = r;
        p->queue_tail = r;
    } else if (rc != 0) {
        req_unlink_free(p, r);
        return MPII_ERR_TRANSPORT;
    }
    *out = r;
    return MPII_OK;
}

static mpii_status ofi_isend(mpii_p2p *p, int peer, uint64_t tag, const void *buf, size_t len,
                             mpii_p2p_req **out)
{
    /* fi_tsend only reads the buffer; the request keeps it as void *. */
    return start_op(p, 0, peer, tag, (void *)(uintptr_t)buf, len, out);
}

static mpii_status ofi_irecv(mpii_p2p *p, int peer, uint64_t tag, void *buf, size_t len,
                             mpii_p2p_req **out)
{
    return start_op(p, 1, peer, tag, buf, len, out);
}

static mpii_status ofi_test(mpii_p2p *p, mpii_p2p_req *r, int *done, size_t *got)
{
    if (p == NULL || r == NULL || done == NULL)
        return MPII_ERR_INVALID;
    *done = 0;
    if (!r->done) {
        mpii_status st = ofi_progress(p);
        if (st != MPII_OK)
            return st;
        if (!r->done)
            return MPII_OK;
    }
    mpii_status st = r->status;
    if (got != NULL)
        *got = r->got;
    req_unlink_free(p, r);
    *done = 1;
    return st;
}

static const mpii_p2p_ops ofi_p2p_ops = {
    .isend = ofi_isend,
    .irecv = ofi_irecv,
    .test = ofi_test,
    .progress = ofi_progress,
};

/* ---- libfabric set-up and tear-down ------------------------------------- */

/* prefer_shm: every rank runs on this host, so when the user has not chosen
 * (FI_PROVIDER unset) the shm provider is asked first: measured at 2 ranks,
 * a 1 KiB broadcast took 1.5 us over shm against 22 us over tcp;ofi_rxm,
 * libfabric's first answer here. */
static mpii_status p2p_open(struct mpii_p2p *p, int rank, int size, int prefer_shm, char *err,
                            size_t err_cap)
{
    p->rank = rank;
    p->size = size;
    p->error = MPII_OK;
    struct fi_info *hints = fi_allocinfo();
    if (hints == NULL) {
        mpii_fabric_set_err(err, err_cap, "ofi transport: out of memory (fi_allocinfo)");
        return MPII_ERR_NOMEM;
    }
    hints->caps = FI_TAGGED;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->ep_attr->type = FI_EP_RDM;
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
    hints->domain_attr->threading = FI_THREAD_DOMAIN;
    hints->domain_attr->av_type = FI_AV_TABLE;
    int rc = -FI_ENODATA;
    if (prefer_shm && getenv("FI_PROVIDER") == NULL) {
        hints->fabric_attr->prov_name = strdup("shm"); /* freed by fi_freeinfo */
        if (hints->fabric_attr->prov_name != NULL) {
            rc = fi_getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), NULL, NULL, 0, hints,
                            &p->info);
            free(hints->fabric_attr->prov_name);
            hints->fabric_attr->prov_name = NULL;
            if (rc != 0)
                p->info = NULL; /* no shm here: take libfabric's own choice */
        }
    }
    if (p->info == NULL)
        rc = fi_getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), NULL, NULL, 0, hints,
                        &p->info);
    fi_freeinfo(hints);
    if (rc != 0 || p->info == NULL) {
        const char *prov = getenv("FI_PROVIDER");
        mpii_fabric_set_err(err, err_cap,
                            "ofi transport: no libfabric provider offers reliable tagged messaging "
                            "(fi_getinfo: %s; FI_PROVIDER=%s)",
                            fi_strerror(rc < 0 ? -rc : rc), prov != NULL ? prov : "(unset)");
        p->info = NULL;
        return MPII_ERR_TRANSPORT;
    }
    const char *prov = p->info->fabric_attr != NULL && p->info->fabric_attr->prov_name != NULL
                           ? p->info->fabric_attr->prov_name
                           : "?";
    p->mr_local = (p->info->domain_attr->mr_mode & FI_MR_LOCAL) != 0;
    p->max_msg = p->info->ep_attr->max_msg_size;
    if (p->max_msg < MPII_TREE_HEADER_BYTES) {
        mpii_fabric_set_err(
            err, err_cap,
            "ofi transport: provider %s carries messages of at most %zu bytes; %u needed", prov,
            p->max_msg, MPII_TREE_HEADER_BYTES);
        return MPII_ERR_TRANSPORT;
    }

#define OFI_TRY(call, what)                                                                   \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != 0) {                                                                       \
            mpii_fabric_set_err(err, err_cap, "ofi transport: %s failed (provider %s): %s",  \
                                what, prov, fi_strerror(rc_ < 0 ? -rc_ : rc_));               \
            return MPII_ERR_TRANSPORT;                                                        \
        }                                                                                     \
    } while (0)

    OFI_TRY(fi_fabric(p->info->fabric_attr, &p->fabric, NULL), "fi_fabric");
    OFI_TRY(fi_domain(p->fabric, p->info, &p->domain, NULL), "fi_domain");
    struct fi_cq_attr cq_attr;
    memset(&cq_attr, 0, sizeof cq_attr);
    cq_attr.format = FI_CQ_FORMAT_TAGGED;
    cq_attr.wait_obj = FI_WAIT_NONE;
    OFI_TRY(fi_cq_open(p->domain, &cq_attr, &p->cq, NULL), "fi_cq_open");
    struct fi_av_attr av_attr;
    memset(&av_attr, 0, sizeof av_attr);
    av_attr.type = FI_AV_TABLE;
    av_attr.count = (size_t)size;
    OFI_TRY(fi_av_open(p->domain, &av_attr, &p->av, NULL), "fi_av_open");
    OFI_TRY(fi_endpoint(p->domain, p->info, &p->ep, NULL), "fi_endpoint");
    OFI_TRY(fi_ep_bind(p->ep, &p->cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind (CQ)");
    OFI_TRY(fi_ep_bind(p->ep, &p->av->fid, 0), "fi_ep_bind (AV)");
    if (strcmp(prov, "shm") == 0) {
        /* shm names its region in /dev/shm "<pid>:<domain>:<endpoint>" by
         * default, and a process killed without clean-up leaves it there:
         * a later process given the same pid (pid_max is often 32768) then
         * fails fi_enable with EBUSY. A name unique to this process avoids
         * that (measured: CI's test_bcast.ofi.np6 after test_dead_peer). */
        char name[64];
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
            ts.tv_sec = ts.tv_nsec = 0;
        uint64_t salt = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                        ((uint64_t)(uintptr_t)p << 16);
        int len = snprintf(name, sizeof name, "mpiimport-%ld-%d-%016llx", (long)getpid(), rank,
                           (unsigned long long)salt);
        if (len > 0 && (size_t)len < sizeof name)
            OFI_TRY(fi_setname(&p->ep->fid, name, (size_t)len + 1), "fi_setname (shm)");
    }
    OFI_TRY(fi_enable(p->ep), "fi_enable");
#undef OFI_TRY
    return MPII_OK;
}

/* Publishes our endpoint name, fetches everyone's and inserts them. */
static mpii_status p2p_connect(struct mpii_p2p *p, mpii_pmix_boot *boot, char *err,
                               size_t err_cap)
{
    unsigned char small[256];
    unsigned char *name = small;
    size_t name_len = sizeof small;
    int rc = fi_getname(&p->ep->fid, name, &name_len);
    if (rc == -FI_ETOOSMALL) {
        name = malloc(name_len);
        if (name == NULL) {
            mpii_fabric_set_err(err, err_cap, "ofi transport: out of memory");
            return MPII_ERR_NOMEM;
        }
        rc = fi_getname(&p->ep->fid, name, &name_len);
    }
    if (rc != 0) {
        if (name != small)
            free(name);
        mpii_fabric_set_err(err, err_cap, "ofi transport: fi_getname failed: %s",
                            fi_strerror(rc < 0 ? -rc : rc));
        return MPII_ERR_TRANSPORT;
    }
    void **addrs = NULL;
    size_t *lens = NULL;
    mpii_status st = mpii_pmix_boot_exchange(boot, "ofi", name, name_len, &addrs, &lens);
    if (name != small)
        free(name);
    if (st != MPII_OK) {
        mpii_fabric_set_err(err, err_cap, "ofi transport: address exchange through PMIx failed: %s",
                            mpii_strerror(st));
        return st;
    }
    p->peers = malloc((size_t)p->size * sizeof *p->peers);
    if (p->peers == NULL) {
        mpii_pmix_boot_free_addrs(boot, addrs, lens);
        mpii_fabric_set_err(err, err_cap, "ofi transport: out of memory");
        return MPII_ERR_NOMEM;
    }
    for (int r = 0; r < p->size; r++) {
        p->peers[r] = FI_ADDR_NOTAVAIL;
        int n = fi_av_insert(p->av, addrs[r], 1, &p->peers[r], 0, NULL);
        if (n != 1 || p->peers[r] == FI_ADDR_NOTAVAIL) {
            mpii_pmix_boot_free_addrs(boot, addrs, lens);
            mpii_fabric_set_err(err, err_cap,
                                "ofi transport: fi_av_insert of rank %d's address failed: %s", r,
                                n < 0 ? fi_strerror(-n) : "not inserted");
            return MPII_ERR_TRANSPORT;
        }
    }
    mpii_pmix_boot_free_addrs(boot, addrs, lens);
    return MPII_OK;
}

static void p2p_close(struct mpii_p2p *p)
{
    /* The endpoint first: it drops its pending operations, so nothing writes
     * into a buffer after this; then the registrations (before the domain). */
    if (p->ep != NULL)
        close_fid(&p->ep->fid);
    p->ep = NULL;
    while (p->live != NULL)
        req_unlink_free(p, p->live);
    p->queue_head = p->queue_tail = NULL;
    if (p->av != NULL)
        close_fid(&p->av->fid);
    if (p->cq != NULL)
        close_fid(&p->cq->fid);
    if (p->domain != NULL)
        close_fid(&p->domain->fid);
    if (p->fabric != NULL)
        close_fid(&p->fabric->fid);
    p->av = NULL;
    p->cq = NULL;
    p->domain = NULL;
    p->fabric = NULL;
    if (p->info != NULL)
        fi_freeinfo(p->info);
    p->info = NULL;
    free(p->peers);
    p->peers = NULL;
}

/* ---- driver and transport ops (fabric.h) ------------------------------- */

static void ofi_close(mpii_p2p *p, mpii_pmix_boot *boot)
{
    (void)boot;
    if (p == NULL)
        return;
    p2p_close(p);
    free(p);
}

static mpii_status ofi_open(mpii_pmix_boot *boot, const mpii_transport_options *opt,
                            const mpii_p2p_ops **ops, mpii_p2p **out, size_t *max_chunk,
                            char *err, size_t err_cap)
{
    (void)opt;
    *out = NULL;
    struct mpii_p2p *p = calloc(1, sizeof *p);
    if (p == NULL) {
        mpii_fabric_set_err(err, err_cap, "ofi transport: out of memory");
        return MPII_ERR_NOMEM;
    }
    mpii_status st = p2p_open(p, mpii_pmix_boot_rank(boot), mpii_pmix_boot_size(boot),
                              mpii_pmix_boot_all_on_host(boot), err, err_cap);
    if (st == MPII_OK)
        st = p2p_connect(p, boot, err, err_cap);
    if (st != MPII_OK) {
        ofi_close(p, boot);
        return st;
    }
    *ops = &ofi_p2p_ops;
    *max_chunk = p->max_msg; /* larger messages are refused */
    *out = p;
    return MPII_OK;
}

static const mpii_fabric_driver ofi_driver = {
    .name = "ofi",
    .open = ofi_open,
    .close = ofi_close,
};

static mpii_status ofi_init(const mpii_transport_options *options, mpii_transport **out,
                            char *err, size_t err_cap)
{
    return mpii_fabric_init(&ofi_driver, options, out, err, err_cap);
}

const mpii_transport_ops mpii_ofi_ops = {
    .name = "ofi",
    .init = ofi_init,
    .rank = mpii_fabric_rank,
    .size = mpii_fabric_size,
    .node_info = mpii_fabric_node_info,
    .bcast_start = mpii_fabric_bcast_start,
    .bcast_wait = mpii_fabric_bcast_wait,
    .group_bcast_start = mpii_fabric_group_bcast_start,
    .barrier = mpii_fabric_barrier,
    .node_barrier = mpii_fabric_node_barrier,
    .finalize = mpii_fabric_finalize,
};
