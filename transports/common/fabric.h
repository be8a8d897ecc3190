/* fabric.h — the transport skeleton shared by the fabric transports (ofi,
 * ucx): everything of an mpii_transport_ops except the fabric's own
 * point-to-point layer, which each of them describes with an
 * mpii_fabric_driver.
 *
 * mpii_fabric_init checks the options, reads MPIIMPORT_CHUNK (bytes, optional
 * K/M/G suffix, 1 .. 1 GiB), boots through PMIx (pmix_boot.h), checks the
 * rank against what the wire tag can carry, reads the node grouping, opens the
 * driver's p2p layer and creates the tree (tree_bcast.h) over it. The other
 * functions forward to the tree and the bootstrap; finalize destroys the tree
 * (stopping its progress thread) first, then closes the driver's p2p layer,
 * then finalises the bootstrap. Error sentences start "<name> transport: ".
 * A fabric transport's file then holds its p2p layer, its driver, an init
 * that calls mpii_fabric_init with the driver, and its mpii_transport_ops.
 * Internal to transports/. */
#ifndef MPIIMPORT_TRANSPORTS_FABRIC_H
#define MPIIMPORT_TRANSPORTS_FABRIC_H

#include <stddef.h>

#include "mpiimport/status.h"
#include "mpiimport/transport.h"
#include "p2p.h"
#include "pmix_boot.h"

/* Most ranks a fabric transport takes: the wire tag keeps the sender's rank
 * in the 64 - MPII_P2P_TAG_BITS bits above the caller's tag. */
#define MPII_FABRIC_RANK_BITS (64u - (unsigned)MPII_P2P_TAG_BITS)
#define MPII_FABRIC_MAX_RANKS \
    (MPII_FABRIC_RANK_BITS >= 31u ? 0x7fffffffL : (1L << MPII_FABRIC_RANK_BITS))

#if defined(__GNUC__)
#define MPII_FABRIC_PRINTF(fmt_index, first_arg) \
    __attribute__((format(printf, fmt_index, first_arg)))
#else
#define MPII_FABRIC_PRINTF(fmt_index, first_arg)
#endif

/* Writes a printf-style sentence into err[0..cap) (truncated if need be);
 * nothing when err is NULL or cap is 0. */
void mpii_fabric_set_err(char *err, size_t cap, const char *fmt, ...) MPII_FABRIC_PRINTF(3, 4);

typedef struct mpii_fabric_driver {
    /* The transport's name ("ofi"): error sentences start "<name> transport: ". */
    const char *name;
    /* Opens the fabric's point-to-point layer for the job that boot describes
     * (rank, size and node are known): *ops and *p2p for the tree, and
     * *max_chunk, the largest message the fabric carries (the tree's chunk is
     * capped at it; 0: no limit). Collective when it exchanges addresses. On
     * failure it releases whatever it set up, leaves *p2p NULL and writes a
     * sentence into err. */
    mpii_status (*open)(mpii_pmix_boot *boot, const mpii_transport_options *opt,
                        const mpii_p2p_ops **ops, mpii_p2p **p2p, size_t *max_chunk, char *err,
                        size_t cap);
    /* Closes what open returned, freeing every request still pending; called
     * after the tree is destroyed and before the bootstrap is finalised. */
    void (*close)(mpii_p2p *p2p, mpii_pmix_boot *boot);
} mpii_fabric_driver;

/* mpii_transport_ops.init for the fabric that driver describes. */
mpii_status mpii_fabric_init(const mpii_fabric_driver *driver,
                             const mpii_transport_options *options, mpii_transport **out,
                             char *err, size_t cap);
/* The other mpii_transport_ops members, the same for every fabric. */
int mpii_fabric_rank(const mpii_transport *t);
int mpii_fabric_size(const mpii_transport *t);
mpii_status mpii_fabric_node_info(const mpii_transport *t, mpii_node_info *info);
mpii_status mpii_fabric_bcast_start(mpii_transport *t, int root, const void *buf, size_t len,
                                    mpii_bcast_req **req);
/* MPII_GROUP_LEADERS: over the node leaders (only a leader may call it);
 * MPII_GROUP_NODE: over this node's ranks. Anything else: MPII_ERR_INVALID. */
mpii_status mpii_fabric_group_bcast_start(mpii_transport *t, int group, const void *buf,
                                          size_t len, mpii_bcast_req **req);
mpii_status mpii_fabric_bcast_wait(mpii_transport *t, mpii_bcast_req *req, double timeout_s,
                                   void **buf, size_t *len);
mpii_status mpii_fabric_barrier(mpii_transport *t, double timeout_s);
mpii_status mpii_fabric_node_barrier(mpii_transport *t, double timeout_s);
void mpii_fabric_finalize(mpii_transport *t);

#endif
