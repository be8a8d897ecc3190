/* pmix_boot.h — bootstrap of the fabric transports through PMIx: rank, size,
 * node grouping (local peers, or simulated nodes of ranks_per_node ranks), the
 * node leaders, and the all-to-all exchange of endpoint addresses (PMIx_Put,
 * PMIx_Commit, PMIx_Fence with data collection, PMIx_Get). Internal to
 * transports/. */
#ifndef MPIIMPORT_TRANSPORTS_PMIX_BOOT_H
#define MPIIMPORT_TRANSPORTS_PMIX_BOOT_H

#include <stddef.h>

#include "mpiimport/transport.h"

typedef struct mpii_pmix_boot mpii_pmix_boot;

/* MPII_ERR_TRANSPORT with a sentence in err when no PMIx server is reachable
 * (a plain run outside mpirun/srun). */
mpii_status mpii_pmix_boot_init(int ranks_per_node, mpii_pmix_boot **out, char *err,
                                size_t err_cap);
int mpii_pmix_boot_rank(const mpii_pmix_boot *b);
int mpii_pmix_boot_size(const mpii_pmix_boot *b);
/* 1 when the launcher placed every rank of the job on this host
 * (PMIX_LOCAL_SIZE == job size), whatever ranks_per_node simulates; 0 when
 * not, or when the launcher does not say. */
int mpii_pmix_boot_all_on_host(const mpii_pmix_boot *b);
/* Complete as soon as init returns (from the launcher's job map, no fence).
 * node ranks: the world ranks on this rank's node, ascending; owned by b. */
mpii_status mpii_pmix_boot_node(const mpii_pmix_boot *b, mpii_node_info *info,
                                const int **node_ranks);
/* The node leaders, complete once init returns: (*leaders)[i] is the lowest
 * world rank of node i (node ids are numbered by their lowest rank, so the
 * list ascends and starts with rank 0; simulated nodes: i * ranks_per_node),
 * *count is the node count. Owned by b. */
mpii_status mpii_pmix_boot_leaders(const mpii_pmix_boot *b, const int **leaders, int *count);
/* Publishes this rank's address (key: "mpiimport.<name>.addr") and fetches
 * everyone's: (*addrs)[r] holds (*lens)[r] bytes for rank r. Free both with
 * mpii_pmix_boot_free_addrs. Collective (a PMIx fence over the job); a later
 * exchange under the same name overwrites the earlier addresses. */
mpii_status mpii_pmix_boot_exchange(mpii_pmix_boot *b, const char *name, const void *addr,
                                    size_t addr_len, void ***addrs, size_t **lens);
void mpii_pmix_boot_free_addrs(const mpii_pmix_boot *b, void **addrs, size_t *lens);
/* Pairs this boot's PMIx_Init with PMIx_Finalize (PMIx counts references,
 * so other PMIx users in the process, such as Open MPI, are unaffected). */
void mpii_pmix_boot_finalize(mpii_pmix_boot *b);

#endif
