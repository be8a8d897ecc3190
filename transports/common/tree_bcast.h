/* tree_bcast.h — broadcast and barrier over any mpii_p2p (ofi, ucx): a
 * binomial tree for small messages, and for large ones the same tree with the
 * buffer cut into chunks that flow down it pipelined, so the time is about
 * size / bandwidth + depth x chunk time. Receivers learn the size from a
 * fixed-size first message. Broadcasts are non-blocking with timeouts, with
 * the semantics of mpii_transport_ops.bcast_start / bcast_wait (transport.h):
 * several may be pending, all ranks start them in the same order, and a wait
 * that times out leaves the operation pending. Group broadcasts
 * (mpii_transport_ops.group_bcast_start) run the same machinery over a member
 * list, rooted at its first member; each group (1..3) is numbered on its own,
 * apart from the world broadcasts (group 0) and the other groups, so only the
 * members of a group need to agree on its order.
 *
 * The tree runs one background thread that keeps pending operations moving
 * while no call of ours is running (a root that started a broadcast and then
 * blocks elsewhere must still deliver it). It and every call here take the
 * tree's mutex, so the p2p layer is called by one thread at a time, but not
 * always by the same thread: the fabric must allow serialised use from
 * several threads (libfabric FI_THREAD_DOMAIN; UCX UCS_THREAD_MODE_SERIALIZED
 * or stronger). The p2p layer must not be used outside these calls between
 * mpii_tree_create and mpii_tree_destroy. Internal to transports/. */
#ifndef MPIIMPORT_TRANSPORTS_TREE_BCAST_H
#define MPIIMPORT_TRANSPORTS_TREE_BCAST_H

#include <stddef.h>

#include "mpiimport/transport.h"
#include "p2p.h"

/* Size of the first message of every broadcast: the p2p layer must carry
 * messages of this size and of the chunk size. */
#define MPII_TREE_HEADER_BYTES 8192u
/* Default pipeline chunk. */
#define MPII_TREE_DEFAULT_CHUNK ((size_t)1 << 20)
/* Smallest chunk accepted (smaller requests are raised to it). */
#define MPII_TREE_MIN_CHUNK ((size_t)4096)

typedef struct mpii_tree mpii_tree;

/* chunk: pipeline chunk size in bytes (0: the default, 1 MiB). */
mpii_status mpii_tree_create(const mpii_p2p_ops *ops, mpii_p2p *p2p, int rank, int size,
                             size_t chunk, mpii_tree **out);
/* Stops the background thread, then frees the tree and every broadcast still
 * pending (their requests become invalid). Memory that a still-pending p2p
 * operation may read or write is left allocated, since the p2p layer may
 * touch it until it closes. Call it before closing the p2p layer. */
void mpii_tree_destroy(mpii_tree *tree);
mpii_status mpii_tree_bcast_start(mpii_tree *tree, int root, const void *buf, size_t len,
                                  mpii_bcast_req **req);
/* A broadcast among members[0..count) (distinct world ranks, count >= 1,
 * including this rank; else MPII_ERR_INVALID), rooted at members[0], which
 * sends buf[0..len) (the others' buf and len are ignored). group, 1..3, picks
 * the sequence: every member starts a group's broadcasts in the same order,
 * and with the same member list; groups are ordered independently of each
 * other and of mpii_tree_bcast_start. Completed by mpii_tree_bcast_wait. */
mpii_status mpii_tree_group_bcast_start(mpii_tree *tree, int group, const int *members, int count,
                                        const void *buf, size_t len, mpii_bcast_req **req);
/* Completes a broadcast of either kind (see transport.h's bcast_wait). */
mpii_status mpii_tree_bcast_wait(mpii_tree *tree, mpii_bcast_req *req, double timeout_s,
                                 void **buf, size_t *len);
/* Barrier among all ranks, or among the ranks listed (members, count, must
 * include this rank) — the node barrier. All-rank barriers and member-list
 * barriers are counted separately: each kind must be called in the same order
 * by the ranks taking part. A barrier that times out keeps running in the
 * background (driven by later calls) so that the other ranks still complete
 * theirs. */
mpii_status mpii_tree_barrier(mpii_tree *tree, const int *members, int count, double timeout_s);

#endif
