/* ucx_transport.c — the "ucx" transport: broadcasts and barriers over UCX
 * (UCP tag matching), bootstrapped through PMIx, with no MPI.
 *
 * This file exports one symbol, mpii_ucx_ops, which the generated registry
 * lists. It provides the point-to-point layer of p2p.h over one UCP worker, as
 * the driver of the shared fabric skeleton (fabric.h: init, MPIIMPORT_CHUNK,
 * forwarding, finalize order), and leaves the broadcast and barrier algorithms
 * to the shared tree (tree_bcast.h) and rank, node grouping and address
 * exchange to the shared PMIx bootstrap (pmix_boot.h).
 *
 * Set-up. UCX's own configuration is read with ucp_config_read, so UCX_TLS,
 * UCX_NET_DEVICES and the other UCX_* variables act as UCX users expect. One
 * context (UCP_FEATURE_TAG) and one worker per transport instance; the
 * worker's address goes through the PMIx exchange. The worker is
 * UCS_THREAD_MODE_SERIALIZED, not SINGLE: the tree (tree_bcast.h) calls the
 * p2p layer under its mutex but from two threads, the caller's and its
 * background progress thread (which lets a root that blocks elsewhere, e.g.
 * in mpi4py's MPI_Init, still deliver what it started sending).
 * Endpoints are created lazily, the first time a peer is sent to (never for
 * a receive: see ucx_irecv), so a rank only ever connects to its tree
 * neighbours; init creates the
 * ones of the tree rooted at rank 0 at once, so that a UCX_TLS that cannot
 * reach the peers fails init with a sentence (UCX itself also logs an error).
 *
 * Peer failure. Endpoints to other nodes ask for UCP_ERR_HANDLING_MODE_PEER,
 * and their error handler marks the peer failed: later sends to it fail, and
 * receives from it are cancelled, so a dead peer gives MPII_ERR_TRANSPORT
 * instead of a hang. Endpoints within a node use mode none, because UCX 1.13's
 * shared-memory transports (posix, sysv; cma has no active messages at all)
 * have no peer-failure support, and asking for it would silently move all
 * node-local traffic to tcp. A dead local peer is left to the callers'
 * timeouts. When every rank is on this host (PMIX_LOCAL_SIZE == job size)
 * all endpoints are node-local, whatever simulated nodes (ranks_per_node)
 * say: UCX 1.13's tcp path, which peer mode selects, aborts a process that
 * connects to a peer that has just finalised. If
 * creating a peer-mode endpoint fails (no selected transport supports it:
 * UCX logs one error), that endpoint and all later ones use mode none.
 *
 * Tags. UCP matches on the tag only, not on the sender, so the wire tag is
 * the caller's tag (< 2^MPII_P2P_TAG_BITS, p2p.h) with the sender's rank in
 * the bits above (declared to UCX as tag_sender_mask); a receive matches all
 * 64 bits. UCP keeps messages between two workers with equal tags in order.
 *
 * Requests. isend/irecv wrap what ucp_tag_send_nbx / ucp_tag_recv_nbx return:
 * NULL (completed at once: the wrapper is born complete), an error pointer, or
 * a UCX request that test polls with ucp_request_check_status (sends) or
 * ucp_tag_recv_request_test (receives, to learn the size) after progressing the
 * worker, and frees with ucp_request_free. Receives are posted with
 * UCP_OP_ATTR_FLAG_NO_IMM_CMPL: UCX 1.13 completes a callback-less receive at
 * once without filling in its size. Live wrappers sit on a list so that
 * finalize can cancel and free whatever the tree left pending. Every UCX error
 * becomes MPII_ERR_TRANSPORT; a message longer than its receive buffer,
 * MPII_ERR_CORRUPT.
 *
 * Finalize stops the tree (and its thread), closes the endpoints with a flush
 * (failed ones by force), progresses the closes for at most
 * MPII_UCX_CLOSE_TIMEOUT_S, then destroys the worker and the context and
 * finalises the PMIx bootstrap. options->before_finalize is never called: an
 * application's MPI_Finalize ends neither UCX nor PMIx (reference counted)
 * under us, so the session ends at the caller's own finalize.
 *
 * MPIIMPORT_CHUNK (bytes, optional K/M/G suffix; read by fabric.c) sets the
 * tree's pipeline chunk. The ops may be called from any thread: everything after init goes
 * through the tree, which serialises on its mutex. Library code never prints:
 * errors are return codes and, for init, a sentence. */
#include <ucp/api/ucp.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpiimport/status.h"
#include "mpiimport/transport.h"
#include "mpiimport/util.h"
#include "fabric.h"
#include "p2p.h"
#include "pmix_boot.h"
#include "tree_bcast.h"

/* Wire tag: the caller's tag in the low MPII_P2P_TAG_BITS (40) bits, the
 * sender's rank in the 24 above (so at most 16 M ranks). */
#define MPII_UCX_TAG_BITS ((unsigned)MPII_P2P_TAG_BITS)
#define MPII_UCX_RANK_BITS (64u - MPII_UCX_TAG_BITS)
#define MPII_UCX_TAG_MASK ((UINT64_C(1) << MPII_UCX_TAG_BITS) - 1u)
/* Bound on finalize's wait for the endpoints' flush-and-close. */
#define MPII_UCX_CLOSE_TIMEOUT_S 5.0
/* Bound on the work one progress call does (ucp_worker_progress calls). */
#define MPII_UCX_PROGRESS_ROUNDS 64

struct mpii_p2p_req {
    struct mpii_p2p_req *prev, *next; /* the p2p's list of live requests */
    void *ucx;           /* UCX request while pending, NULL once complete */
    ucs_status_t status; /* the final status once ucx is NULL */
    size_t want;         /* receives: the buffer's size; sends: the length */
    size_t got;          /* receives: the size that arrived */
    int peer;
    int is_recv;
};

/* The error handler's argument: which peer of which p2p. */
struct mpii_ucx_peer_ref {
    struct mpii_p2p *p2p;
    int peer;
};

struct mpii_p2p {
    ucp_context_h context;
    ucp_worker_h worker;
    int rank;
    int size;
    ucp_ep_h *eps;                     /* size entries, NULL until first use */
    unsigned char *failed;             /* size flags: peer's endpoint reported an error */
    unsigned char *same_node;          /* size flags: peer shares this rank's node */
    int peer_mode_broken;              /* a peer-mode endpoint could not be created */
    struct mpii_ucx_peer_ref *refs;    /* size error-handler arguments */
    void **addrs;                      /* everyone's worker address (pmix_boot) */
    size_t *addr_lens;
    struct mpii_p2p_req *live;         /* requests handed out and not yet freed */
};

/* ---- endpoints ---------------------------------------------------------- */

static void ucx_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)ep;
    (void)status;
    struct mpii_ucx_peer_ref *ref = arg;
    ref->p2p->failed[ref->peer] = 1; /* the endpoint is closed (by force) at finalize */
}

/* The endpoint to peer, created on first use. */
static mpii_status get_ep(struct mpii_p2p *p, int peer, ucp_ep_h *out)
{
    if (p->failed[peer])
        return MPII_ERR_TRANSPORT;
    if (p->eps[peer] != NULL) {
        *out = p->eps[peer];
        return MPII_OK;
    }
    p->refs[peer].p2p = p;
    p->refs[peer].peer = peer;
    ucp_ep_params_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    params.address = p->addrs[peer];
    params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    ucs_status_t st = UCS_ERR_UNSUPPORTED;
    if (!p->same_node[peer] && !p->peer_mode_broken) {
        ucp_ep_params_t peer_params = params;
        peer_params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
        peer_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
        peer_params.err_handler.cb = ucx_ep_error;
        peer_params.err_handler.arg = &p->refs[peer];
        st = ucp_ep_create(p->worker, &peer_params, &p->eps[peer]);
        if (st != UCS_OK)
            p->peer_mode_broken = 1; /* no selected transport detects failures */
    }
    if (st != UCS_OK)
        st = ucp_ep_create(p->worker, &params, &p->eps[peer]);
    if (st != UCS_OK) {
        p->eps[peer] = NULL;
        return MPII_ERR_TRANSPORT;
    }
    *out = p->eps[peer];
    return MPII_OK;
}

/* ---- point-to-point (p2p.h) --------------------------------------------- */

static struct mpii_p2p_req *req_new(struct mpii_p2p *p, int peer, int is_recv, size_t want)
{
    struct mpii_p2p_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->peer = peer;
    r->is_recv = is_recv;
    r->want = want;
    r->status = UCS_INPROGRESS;
    r->next = p->live;
    if (p->live != NULL)
        p->live->prev = r;
    p->live = r;
    return r;
}

static void req_unlink_free(struct mpii_p2p *p, struct mpii_p2p_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        p->live = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    free(r);
}

static int check_peer(const struct mpii_p2p *p, int peer, uint64_t tag)
{
    return p != NULL && peer >= 0 && peer < p->size && (tag & ~MPII_UCX_TAG_MASK) == 0;
}

static uint64_t wire_tag(int sender, uint64_t tag)
{
    return ((uint64_t)(unsigned)sender << MPII_UCX_TAG_BITS) | tag;
}

/* Makes progress on the worker until it reports nothing more to do. */
static void progress_worker(struct mpii_p2p *p)
{
    for (int i = 0; i < MPII_UCX_PROGRESS_ROUNDS; i++)
        if (ucp_worker_progress(p->worker) == 0)
            break;
}

static mpii_status ucx_isend(mpii_p2p *p, int peer, uint64_t tag, const void *buf, size_t len,
                             mpii_p2p_req **out)
{
    if (out == NULL || !check_peer(p, peer, tag) || (buf == NULL && len > 0))
        return MPII_ERR_INVALID;
    *out = NULL;
    ucp_ep_h ep = NULL;
    mpii_status st = get_ep(p, peer, &ep);
    if (st != MPII_OK)
        return st;
    struct mpii_p2p_req *r = req_new(p, peer, 0, len);
    if (r == NULL)
        return MPII_ERR_NOMEM;
    ucp_request_param_t param;
    memset(&param, 0, sizeof param);
    param.op_attr_mask = 0; /* no callback: completion is polled */
    ucs_status_ptr_t sp = ucp_tag_send_nbx(ep, buf, len, wire_tag(p->rank, tag), &param);
    if (UCS_PTR_IS_ERR(sp)) {
        req_unlink_free(p, r);
        return MPII_ERR_TRANSPORT;
    }
    if (sp == NULL) {
        r->status = UCS_OK; /* completed at once */
    } else {
        r->ucx = sp;
    }
    *out = r;
    return MPII_OK;
}

static mpii_status ucx_irecv(mpii_p2p *p, int peer, uint64_t tag, void *buf, size_t len,
                             mpii_p2p_req **out)
{
    if (out == NULL || !check_peer(p, peer, tag) || (buf == NULL && len > 0))
        return MPII_ERR_INVALID;
    *out = NULL;
    /* No endpoint to the sender is made for a receive. A sender may
     * legitimately have sent its last message and finalised already, and
     * connecting to it then fails inside UCX 1.13 in ways that abort the
     * process (shared memory: shmat EINVAL; tcp: "Connection refused", then
     * an assertion in its tcp endpoint). So receives rely on the caller's
     * timeout, or on an endpoint already made for sending, whose error
     * handler marks the peer failed; poll_req cancels a receive only if it is
     * still unmatched once the peer is known to be gone (UCX delivers what a
     * peer sent before its connection's end). */
    struct mpii_p2p_req *r = req_new(p, peer, 1, len);
    if (r == NULL)
        return MPII_ERR_NOMEM;
    ucp_tag_recv_info_t info;
    memset(&info, 0, sizeof info);
    ucp_request_param_t param;
    memset(&param, 0, sizeof param);
    /* UCX 1.13 leaves tag_info unfilled when a receive without a callback
     * completes at once, so ask for a request always and read the size from
     * ucp_tag_recv_request_test. */
    param.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    param.recv_info.tag_info = &info;
    ucs_status_ptr_t sp =
        ucp_tag_recv_nbx(p->worker, buf, len, wire_tag(peer, tag), UINT64_MAX, &param);
    if (UCS_PTR_IS_ERR(sp)) {
        req_unlink_free(p, r);
        return MPII_ERR_TRANSPORT;
    }
    if (sp == NULL) {
        r->status = UCS_OK; /* completed at once: info is filled in */
        r->got = info.length;
    } else {
        r->ucx = sp;
    }
    *out = r;
    return MPII_OK;
}

/* Polls r's UCX request once; on completion frees it and records the status. */
static void poll_req(struct mpii_p2p *p, struct mpii_p2p_req *r)
{
    if (r->ucx == NULL)
        return;
    ucs_status_t st;
    if (r->is_recv) {
        ucp_tag_recv_info_t info;
        memset(&info, 0, sizeof info);
        st = ucp_tag_recv_request_test(r->ucx, &info);
        if (st == UCS_INPROGRESS && p->failed[r->peer]) {
            /* The sender is gone: stop waiting. A cancelled receive completes
             * with UCS_ERR_CANCELED, and freeing it is allowed either way. */
            ucp_request_cancel(p->worker, r->ucx);
            st = UCS_ERR_CANCELED;
        }
        if (st != UCS_INPROGRESS)
            r->got = info.length;
    } else {
        st = ucp_request_check_status(r->ucx);
    }
    if (st == UCS_INPROGRESS)
        return;
    ucp_request_free(r->ucx);
    r->ucx = NULL;
    r->status = st;
}

static mpii_status ucx_test(mpii_p2p *p, mpii_p2p_req *r, int *done, size_t *got)
{
    if (p == NULL || r == NULL || done == NULL)
        return MPII_ERR_INVALID;
    *done = 0;
    if (r->ucx != NULL) {
        /* Look first: the tree progresses once per pass and then tests many
         * requests, most of them already complete or not yet ready. */
        poll_req(p, r);
        if (r->ucx != NULL) {
            (void)ucp_worker_progress(p->worker);
            poll_req(p, r);
        }
        if (r->ucx != NULL)
            return MPII_OK;
    }
    /* Complete: report and free. An error completes (and frees) it too. */
    mpii_status st = MPII_OK;
    if (r->status == UCS_ERR_MESSAGE_TRUNCATED)
        st = MPII_ERR_CORRUPT;
    else if (r->status != UCS_OK)
        st = MPII_ERR_TRANSPORT;
    else if (r->is_recv && r->got > r->want)
        st = MPII_ERR_CORRUPT;
    if (got != NULL)
        *got = r->is_recv ? r->got : r->want;
    req_unlink_free(p, r);
    *done = 1;
    return st;
}

static mpii_status ucx_progress(mpii_p2p *p)
{
    if (p == NULL)
        return MPII_ERR_INVALID;
    progress_worker(p);
    return MPII_OK;
}

static const mpii_p2p_ops ucx_p2p_ops = {
    .isend = ucx_isend,
    .irecv = ucx_irecv,
    .test = ucx_test,
    .progress = ucx_progress,
};

/* ---- UCX set-up and tear-down ------------------------------------------- */

/* node_ranks[0..local_size): the ranks on this rank's node. */
static mpii_status p2p_open(struct mpii_p2p *p, int rank, int size, const int *node_ranks,
                            int local_size, int one_host, char *err, size_t err_cap)
{
    p->rank = rank;
    p->size = size;
    size_t n = (size_t)size;
    p->eps = calloc(n, sizeof *p->eps);
    p->failed = calloc(n, sizeof *p->failed);
    p->same_node = calloc(n, sizeof *p->same_node);
    p->refs = calloc(n, sizeof *p->refs);
    if (p->eps == NULL || p->failed == NULL || p->same_node == NULL || p->refs == NULL) {
        mpii_fabric_set_err(err, err_cap, "ucx transport: out of memory");
        return MPII_ERR_NOMEM;
    }
    for (int i = 0; node_ranks != NULL && i < local_size; i++) {
        if (node_ranks[i] < 0 || node_ranks[i] >= size) {
            mpii_fabric_set_err(err, err_cap, "ucx transport: node rank %d is out of range",
                                node_ranks[i]);
            return MPII_ERR_TRANSPORT;
        }
        p->same_node[node_ranks[i]] = 1;
    }
    if (one_host) /* every rank on this host: shared memory to all, whatever the grouping */
        memset(p->same_node, 1, n);

    ucp_config_t *config = NULL;
    ucs_status_t st = ucp_config_read(NULL, NULL, &config);
    if (st != UCS_OK) {
        mpii_fabric_set_err(err, err_cap,
                            "ucx transport: ucp_config_read failed: %s (check UCX_* variables)",
                            ucs_status_string(st));
        return MPII_ERR_TRANSPORT;
    }
    ucp_params_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_TAG_SENDER_MASK |
                        UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS |
                        UCP_PARAM_FIELD_ESTIMATED_NUM_PPN | UCP_PARAM_FIELD_NAME;
    params.features = UCP_FEATURE_TAG;
    params.tag_sender_mask = ~MPII_UCX_TAG_MASK;
    params.mt_workers_shared = 0;
    params.estimated_num_eps = n;
    params.estimated_num_ppn = local_size > 0 ? (size_t)local_size : 1;
    params.name = "mpiimport";
    st = ucp_init(&params, config, &p->context);
    ucp_config_release(config);
    if (st != UCS_OK) {
        p->context = NULL;
        mpii_fabric_set_err(err, err_cap, "ucx transport: ucp_init failed: %s",
                            ucs_status_string(st));
        return MPII_ERR_TRANSPORT;
    }

    ucp_worker_params_t wparams;
    memset(&wparams, 0, sizeof wparams);
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wparams.thread_mode = UCS_THREAD_MODE_SERIALIZED; /* see the header comment */
    st = ucp_worker_create(p->context, &wparams, &p->worker);
    if (st != UCS_OK) {
        p->worker = NULL;
        mpii_fabric_set_err(err, err_cap, "ucx transport: ucp_worker_create failed: %s",
                            ucs_status_string(st));
        return MPII_ERR_TRANSPORT;
    }
    return MPII_OK;
}

/* Publishes this worker's address and fetches everyone's (collective). */
static mpii_status p2p_exchange(struct mpii_p2p *p, mpii_pmix_boot *boot, char *err,
                                size_t err_cap)
{
    ucp_address_t *addr = NULL;
    size_t addr_len = 0;
    ucs_status_t st = ucp_worker_get_address(p->worker, &addr, &addr_len);
    if (st != UCS_OK) {
        mpii_fabric_set_err(err, err_cap, "ucx transport: ucp_worker_get_address failed: %s",
                            ucs_status_string(st));
        return MPII_ERR_TRANSPORT;
    }
    mpii_status ms = mpii_pmix_boot_exchange(boot, "ucx", addr, addr_len, &p->addrs,
                                             &p->addr_lens);
    ucp_worker_release_address(p->worker, addr);
    if (ms != MPII_OK) {
        p->addrs = NULL;
        p->addr_lens = NULL;
        mpii_fabric_set_err(err, err_cap,
                            "ucx transport: exchanging worker addresses through PMIx failed: %s",
                            mpii_strerror(ms));
        return ms;
    }
    for (int r = 0; r < p->size; r++) {
        if (p->addrs[r] == NULL || p->addr_lens[r] == 0) {
            mpii_fabric_set_err(err, err_cap, "ucx transport: rank %d published no UCX address", r);
            return MPII_ERR_TRANSPORT;
        }
    }
    return MPII_OK;
}

/* Creates the endpoints to this rank's neighbours in the binomial tree rooted
 * at rank 0 (the root of nearly every broadcast; tree_bcast.c's layout), so
 * that a UCX configuration that cannot reach the peers (UCX_TLS=cma or self
 * alone, say) fails init with a sentence instead of the first broadcast.
 * Creating an endpoint is local: no peer takes part. */
static mpii_status connect_neighbours(struct mpii_p2p *p, char *err, size_t err_cap)
{
    unsigned r = (unsigned)p->rank, n = (unsigned)p->size;
    unsigned low = r & (0u - r); /* r's lowest set bit; 0 for rank 0 */
    unsigned top = 1;
    while (top < n && top < (1u << 30))
        top <<= 1;
    unsigned span = r == 0 ? top : low;
    int peers[34];
    int count = 0;
    if (r != 0)
        peers[count++] = (int)(r - low);
    for (unsigned m = span >> 1; m >= 1 && count < 34; m >>= 1)
        if (r + m < n)
            peers[count++] = (int)(r + m);
    for (int i = 0; i < count; i++) {
        ucp_ep_h ep = NULL;
        if (get_ep(p, peers[i], &ep) != MPII_OK) {
            const char *tls = getenv("UCX_TLS");
            mpii_fabric_set_err(
                err, err_cap,
                "ucx transport: UCX cannot reach rank %d from rank %d (UCX_TLS=%.100s): no "
                "transport for tagged messages between them",
                peers[i], p->rank, tls != NULL ? tls : "unset");
            return MPII_ERR_TRANSPORT;
        }
    }
    return MPII_OK;
}

/* Progresses the requests in reqs[0..n) until all complete or the deadline;
 * frees them all (UCX releases an unfinished one once it completes). */
static void wait_close_requests(struct mpii_p2p *p, void **reqs, size_t n, double deadline)
{
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < n; i++) {
            if (reqs[i] == NULL)
                continue;
            if (ucp_request_check_status(reqs[i]) != UCS_INPROGRESS) {
                ucp_request_free(reqs[i]);
                reqs[i] = NULL;
            } else {
                pending++;
            }
        }
        if (pending == 0 || mpii_monotonic_s() >= deadline)
            break;
        progress_worker(p);
    }
    for (size_t i = 0; i < n; i++)
        if (reqs[i] != NULL)
            ucp_request_free(reqs[i]);
}

static void p2p_close(struct mpii_p2p *p, mpii_pmix_boot *boot)
{
    if (p->worker != NULL) {
        /* Whatever the tree left pending: cancel receives, drop sends. */
        for (struct mpii_p2p_req *r = p->live; r != NULL; r = r->next) {
            if (r->ucx != NULL) {
                if (r->is_recv)
                    ucp_request_cancel(p->worker, r->ucx);
                ucp_request_free(r->ucx);
                r->ucx = NULL;
            }
        }
        /* Close every endpoint at once, flushing (forcing the failed ones). */
        size_t n = 0;
        void **reqs = p->eps != NULL ? calloc((size_t)p->size, sizeof *reqs) : NULL;
        for (int peer = 0; p->eps != NULL && peer < p->size; peer++) {
            if (p->eps[peer] == NULL)
                continue;
            ucp_request_param_t param;
            memset(&param, 0, sizeof param);
            if (p->failed[peer] || reqs == NULL) {
                /* Force also when out of memory: nowhere to keep a request. */
                param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
                param.flags = UCP_EP_CLOSE_FLAG_FORCE;
            }
            ucs_status_ptr_t sp = ucp_ep_close_nbx(p->eps[peer], &param);
            p->eps[peer] = NULL;
            if (sp != NULL && !UCS_PTR_IS_ERR(sp)) {
                if (reqs != NULL)
                    reqs[n++] = sp;
                else
                    ucp_request_free(sp);
            }
        }
        if (reqs != NULL) {
            wait_close_requests(p, reqs, n, mpii_monotonic_s() + MPII_UCX_CLOSE_TIMEOUT_S);
            free(reqs);
        }
        ucp_worker_destroy(p->worker);
        p->worker = NULL;
    }
    if (p->context != NULL) {
        ucp_cleanup(p->context);
        p->context = NULL;
    }
    while (p->live != NULL)
        req_unlink_free(p, p->live);
    if (p->addrs != NULL || p->addr_lens != NULL)
        mpii_pmix_boot_free_addrs(boot, p->addrs, p->addr_lens);
    p->addrs = NULL;
    p->addr_lens = NULL;
    free(p->eps);
    free(p->failed);
    free(p->same_node);
    free(p->refs);
    p->eps = NULL;
    p->failed = NULL;
    p->same_node = NULL;
    p->refs = NULL;
}

/* ---- driver and transport ops (fabric.h) ------------------------------- */

static void ucx_close(mpii_p2p *p, mpii_pmix_boot *boot)
{
    if (p == NULL)
        return;
    p2p_close(p, boot);
    free(p);
}

static mpii_status ucx_open(mpii_pmix_boot *boot, const mpii_transport_options *opt,
                            const mpii_p2p_ops **ops, mpii_p2p **out, size_t *max_chunk,
                            char *err, size_t err_cap)
{
    (void)opt;
    *out = NULL;
    mpii_node_info node;
    const int *node_ranks = NULL;
    mpii_status st = mpii_pmix_boot_node(boot, &node, &node_ranks);
    if (st != MPII_OK) {
        mpii_fabric_set_err(err, err_cap, "ucx transport: node grouping through PMIx failed: %s",
                            mpii_strerror(st));
        return st;
    }
    struct mpii_p2p *p = calloc(1, sizeof *p);
    if (p == NULL) {
        mpii_fabric_set_err(err, err_cap, "ucx transport: out of memory");
        return MPII_ERR_NOMEM;
    }
    st = p2p_open(p, mpii_pmix_boot_rank(boot), mpii_pmix_boot_size(boot), node_ranks,
                  node.local_size, mpii_pmix_boot_all_on_host(boot), err, err_cap);
    if (st == MPII_OK)
        st = p2p_exchange(p, boot, err, err_cap);
    if (st == MPII_OK)
        st = connect_neighbours(p, err, err_cap);
    if (st != MPII_OK) {
        ucx_close(p, boot);
        return st;
    }
    *ops = &ucx_p2p_ops;
    *max_chunk = 0; /* UCX carries messages of any size */
    *out = p;
    return MPII_OK;
}

static const mpii_fabric_driver ucx_driver = {
    .name = "ucx",
    .open = ucx_open,
    .close = ucx_close,
};

static mpii_status ucx_init(const mpii_transport_options *options, mpii_transport **out,
                            char *err, size_t err_cap)
{
    return mpii_fabric_init(&ucx_driver, options, out, err, err_cap);
}

const mpii_transport_ops mpii_ucx_ops = {
    .name = "ucx",
    .init = ucx_init,
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
