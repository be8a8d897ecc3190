/* p2p.h — what a fabric transport (ofi, ucx) provides so that the shared
 * bootstrap (pmix_boot.h) and tree broadcast (tree_bcast.h) can run over it:
 * non-blocking tagged point-to-point messages of known size between ranks,
 * and a progress call. Internal to transports/; not installed.
 *
 * Matching is on (peer, tag): a receive from peer with tag matches only a
 * message that peer sent with that tag. Callers use tags below
 * 2^MPII_P2P_TAG_BITS, so that a transport can keep the bits above for the
 * sender's rank. A request is complete when test reports *done = 1 — with
 * MPII_OK, or with an error (the operation failed) — and is freed then;
 * requests never tested to completion are freed by the transport when it
 * closes, and nothing is written into a receive buffer after that. */
#ifndef MPIIMPORT_TRANSPORTS_P2P_H
#define MPIIMPORT_TRANSPORTS_P2P_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/status.h"

/* Tags passed to isend/irecv are < 2^MPII_P2P_TAG_BITS. */
#define MPII_P2P_TAG_BITS 40

typedef struct mpii_p2p mpii_p2p;          /* the fabric's endpoint state */
typedef struct mpii_p2p_req mpii_p2p_req;  /* one pending send or receive */

typedef struct mpii_p2p_ops {
    /* Sends len bytes of buf to peer with tag; buf stays valid until done. */
    mpii_status (*isend)(mpii_p2p *p, int peer, uint64_t tag, const void *buf, size_t len,
                         mpii_p2p_req **req);
    /* Receives a message of at most len bytes from peer with tag into buf
     * (a longer one fails the receive with MPII_ERR_CORRUPT). */
    mpii_status (*irecv)(mpii_p2p *p, int peer, uint64_t tag, void *buf, size_t len,
                         mpii_p2p_req **req);
    /* Makes progress; *done = 1 when req has completed (req is then freed),
     * and then *got (if got is not NULL) is the number of bytes that arrived
     * (receives) or were sent. A failed operation returns its error with
     * *done = 1; an error with *done = 0 leaves req pending. */
    mpii_status (*test)(mpii_p2p *p, mpii_p2p_req *req, int *done, size_t *got);
    /* Makes progress on everything pending without waiting. */
    mpii_status (*progress)(mpii_p2p *p);
} mpii_p2p_ops;

#endif
