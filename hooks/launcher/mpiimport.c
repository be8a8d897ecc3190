/* mpiimport.c — the `mpiimport` command: stage an image on this node, remove
 * it, or run any program with the node's stage serving its dynamic loader.
 *
 *   mpiimport stage IMAGE            one task per node (srun --ntasks-per-node=1)
 *   mpiimport unstage IMAGE
 *   mpiimport run --image IMAGE -- CMD [ARGS...]
 *
 * `run` needs no MPI and makes no communication: it checks the node's stage
 * of IMAGE (seal, index, staged files; node-local calls only) and execs CMD
 * with LD_AUDIT naming libmpiimport_audit.so (the dynamic loader's searches
 * served from the stage, hooks/preload/mpiimport_audit.c), LD_PRELOAD naming
 * libmpiimport_preload.so (the process's own open/stat/access, same stage,
 * hooks/preload/mpiimport_preload.c) and, for Python
 * programs, MPIIMPORT_IMAGE + MPIIMPORT_STAGED=1, so that mpiimport.install()
 * and the site hook serve imports from the same stage (one layer, one copy).
 * A node without the stage (or with a damaged one) runs CMD plainly and says
 * so on stderr. This is the edge: it prints; the core returns errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpiimport/config.h"
#include "mpiimport/image.h"
#include "mpiimport/stage.h"

#define AUDIT_LIB "libmpiimport_audit.so"
#define PRELOAD_LIB "libmpiimport_preload.so"

static const char usage[] =
    "usage: mpiimport stage IMAGE\n"
    "       mpiimport unstage IMAGE\n"
    "       mpiimport run --image IMAGE -- CMD [ARGS...]\n"
    "\n"
    "  stage    stage a packed image (python3 -m mpiimport pack) on this node, for every\n"
    "           later job step; run it once per node: srun --ntasks-per-node=1 mpiimport stage IMAGE\n"
    "  unstage  remove this node's stage of IMAGE\n"
    "  run      run CMD with the dynamic loader (and, for Python, imports) served from this\n"
    "           node's stage of IMAGE: no communication, no shared-file-system call for what\n"
    "           the image holds\n"
    "\n"
    "Settings: MPIIMPORT_STAGE_DIR (default /dev/shm), MPIIMPORT_TIMEOUT.\n";

static const char *env_get(void *arg, const char *name)
{
    (void)arg;
    return getenv(name);
}

static int load_config(mpii_config *cfg)
{
    char err[512] = "";
    if (mpii_config_load(cfg, env_get, NULL, err, sizeof err) != MPII_OK) {
        fprintf(stderr, "mpiimport: %s\n", err[0] ? err : "bad settings");
        return -1;
    }
    return 0;
}

static int cmd_stage(const char *image, int stage)
{
    mpii_config cfg;
    if (load_config(&cfg) != 0)
        return 2;
    char root[4096];
    mpii_status st = mpii_stage_image_root(cfg.stage_dir, image, root, sizeof root);
    int flag = 0;
    uint64_t files = 0, bytes = 0;
    if (st == MPII_OK)
        st = stage ? mpii_stage_image(cfg.stage_dir, image, cfg.timeout_s, &flag, &files, &bytes)
                   : mpii_unstage_image(cfg.stage_dir, image, &flag);
    if (st != MPII_OK) {
        fprintf(stderr, "mpiimport %s: %s: %s%s\n", stage ? "stage" : "unstage", image,
                mpii_strerror(st),
                stage ? " (nothing staged; check the image: python3 -m mpiimport show IMAGE)" : "");
        return 1;
    }
    if (!stage)
        printf("mpiimport unstage: %s %s\n", flag ? "removed" : "nothing staged at", root);
    else if (flag)
        printf("mpiimport stage: %s is staged already in %s\n", image, root);
    else
        printf("mpiimport stage: staged %s (%llu files, %.1f MiB) in %s\n", image,
               (unsigned long long)files, (double)bytes / 1048576.0, root);
    return 0;
}

/* <directory of this executable>/../lib/<name> (the build tree and the
 * install tree have the same shape). */
static int lib_path(const char *name, char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    int w = snprintf(out, cap, "%s/../lib/%s", exe, name);
    struct stat sb;
    return w > 0 && (size_t)w < cap && stat(out, &sb) == 0 && S_ISREG(sb.st_mode) ? 0 : -1;
}

/* Prepends lib to the ':'-separated list in the environment variable var. */
static int prepend_env(const char *var, const char *lib)
{
    char value[2 * PATH_MAX + 64];
    const char *old = getenv(var);
    int w = old != NULL && old[0] ? snprintf(value, sizeof value, "%s:%s", lib, old)
                                   : snprintf(value, sizeof value, "%s", lib);
    return w > 0 && (size_t)w < sizeof value ? setenv(var, value, 1) : -1;
}

static int cmd_run(const char *image, char **argv)
{
    mpii_config cfg;
    char root[4096], audit[PATH_MAX + 64], preload[PATH_MAX + 64];
    mpii_image *index = NULL;
    mpii_status st = MPII_ERR_INVALID;
    if (load_config(&cfg) == 0)
        st = mpii_stage_image_load(cfg.stage_dir, image, root, sizeof root, &index);
    if (st == MPII_OK) {
        mpii_image_destroy(index); /* checked; the audit library reads it in each process */
        if (lib_path(AUDIT_LIB, audit, sizeof audit) != 0 ||
            lib_path(PRELOAD_LIB, preload, sizeof preload) != 0) {
            fprintf(stderr, "mpiimport run: %s or %s not found beside this command; running %s plainly\n",
                    AUDIT_LIB, PRELOAD_LIB, argv[0]);
        } else {
            if (prepend_env("LD_AUDIT", audit) == 0 && prepend_env("LD_PRELOAD", preload) == 0 &&
                setenv("MPIIMPORT_AUDIT_ROOT", root, 1) == 0 && setenv("MPIIMPORT_IMAGE", image, 1) == 0 &&
                setenv("MPIIMPORT_STAGED", "1", 1) == 0) {
                execvp(argv[0], argv);
                fprintf(stderr, "mpiimport run: cannot run %s: %s\n", argv[0], strerror(errno));
                return 127;
            }
            fprintf(stderr, "mpiimport run: cannot set the environment; running %s plainly\n", argv[0]);
        }
    } else if (st == MPII_ERR_NOTFOUND) {
        fprintf(stderr, "mpiimport run: %s is not staged on this node (run `mpiimport stage %s` on "
                "every node first, one task per node); running %s plainly\n", image, image, argv[0]);
    } else {
        fprintf(stderr, "mpiimport run: the stage of %s is refused (%s); running %s plainly\n", image,
                mpii_strerror(st), argv[0]);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "mpiimport run: cannot run %s: %s\n", argv[0], strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "stage") == 0)
        return cmd_stage(argv[2], 1);
    if (argc == 3 && strcmp(argv[1], "unstage") == 0)
        return cmd_stage(argv[2], 0);
    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        const char *image = NULL;
        int i = 2;
        for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
            if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
                image = argv[++i];
            else if (strncmp(argv[i], "--image=", 8) == 0)
                image = argv[i] + 8;
            else
                break;
        }
        if (i < argc && strcmp(argv[i], "--") == 0)
            i++;
        if (image == NULL || i >= argc) {
            fprintf(stderr, "mpiimport run: name the image and the command: "
                            "mpiimport run --image IMAGE -- CMD [ARGS...]\n");
            return 2;
        }
        return cmd_run(image, argv + i);
    }
    fputs(usage, stderr);
    return 2;
}
