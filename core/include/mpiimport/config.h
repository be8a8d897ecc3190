/* config.h — run-time configuration, read once from the environment.
 *
 * Like mpi4py's rc: each setting has an MPIIMPORT_* variable. A bad value is
 * an error whose message says what is valid; the caller then imports plainly. */
#ifndef MPIIMPORT_CONFIG_H
#define MPIIMPORT_CONFIG_H

#include <stddef.h>

#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MPII_CONFIG_STR_MAX 4096

typedef struct mpii_config {
    int disable;                          /* MPIIMPORT_DISABLE=1 */
    int verbose;                          /* MPIIMPORT_VERBOSE=0|1|2 */
    char transport[64];                   /* MPIIMPORT_TRANSPORT, default: first compiled */
    char shared_prefixes[MPII_CONFIG_STR_MAX]; /* MPIIMPORT_SHARED_PREFIXES (':'-separated), "" = sys.path */
    char stage_dir[MPII_CONFIG_STR_MAX];  /* MPIIMPORT_STAGE_DIR, default /dev/shm */
    double timeout_s;                     /* MPIIMPORT_TIMEOUT, seconds, default 30 */
    int ranks_per_node;                   /* MPIIMPORT_RANKS_PER_NODE, 0 = real grouping */
    char cache_dir[MPII_CONFIG_STR_MAX]; /* MPIIMPORT_CACHE_DIR, "" = $XDG_CACHE_HOME/mpiimport or ~/.cache/mpiimport */
    int record;                           /* MPIIMPORT_RECORD=0 disables recorded lists (default 1) */
    char image[MPII_CONFIG_STR_MAX];      /* MPIIMPORT_IMAGE: a packed image to broadcast at install */
    int trust_image;                      /* MPIIMPORT_TRUST_IMAGE=1: skip the staleness checks */
    int staged;                           /* MPIIMPORT_STAGED=1: the image is staged on every node
                                             (mpiimport stage): no collective, each rank serves
                                             from its node's stage */
    char job_id[64];                      /* from SLURM_JOB_ID, PMIX_NAMESPACE or OMPI_MCA_ess_base_jobid */
} mpii_config;

/* getenv_fn(name) returns a variable's value or NULL (getenv, or a test's
 * table). Fills cfg with defaults overridden by the variables. */
typedef const char *(*mpii_getenv_fn)(void *arg, const char *name);
mpii_status mpii_config_load(mpii_config *cfg, mpii_getenv_fn getenv_fn, void *arg, char *err,
                             size_t err_cap);

#ifdef __cplusplus
}
#endif
#endif
