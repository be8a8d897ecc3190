/* mpiimport.c — the `mpiimport` command: stage an image on this node, remove
 * it, or run any program with the node's stage serving its dynamic loader.
 *
 *   mpiimport stage IMAGE            one task per node (srun --ntasks-per-node=1)
 *   mpiimport unstage IMAGE
 *   mpiimport run --image IMAGE -- CMD [ARGS...]
 *
 * `stage`, as a job step under PMIx, is one collective
 * (mpii_distribute_image): rank 0 reads IMAGE, the node leaders receive it
 * over a PMIx-bootstrapped transport, `ofi` or `ucx` (never `mpi`: an
 * MPI_Init here is not wanted), and stage it. `run` checks the node's stage
 * of IMAGE (seal, index, staged files; node-local calls only); `run --stage`
 * makes it first, the same way, as the step's own (its last process removes
 * it) — only for programs that do not start PMIx themselves: Open MPI 4's
 * MPI_Init fails in a process whose rank has used PMIx before (openpmix
 * issue 1558), whether or not that was finalised. Then it execs CMD
 * with LD_AUDIT naming libmpiimport_audit.so (the dynamic loader's searches
 * served from the stage, hooks/preload/mpiimport_audit.c), LD_PRELOAD naming
 * libmpiimport_preload.so (the process's own open/stat/access, same stage,
 * hooks/preload/mpiimport_preload.c) and, for Python
 * programs, MPIIMPORT_IMAGE + MPIIMPORT_STAGED=1, so that mpiimport.install()
 * and the site hook serve imports from the same stage (one layer, one copy).
 * A node without the stage (or with a damaged one) runs CMD plainly and says
 * so on stderr. This is the edge: it prints; the core returns errors.
 *
 * Built twice. `mpiimport` (MPIIMPORT_FRONT_END) links the core alone: the
 * transports' libraries (libfabric, UCX, PMIx and theirs: 25 libraries, and
 * UCX calibrates its clock at load, 0.2 s) would be loaded by every process
 * of every step that `run`s from a stage. A collective stage (`stage` under
 * PMIx, `run --stage` of an image not staged yet) execs the full command,
 * <prefix>/libexec/mpiimport-collective, with the same command line. */
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
#include "mpiimport/transport.h"

#define AUDIT_LIB "libmpiimport_audit.so"
#define COLLECTIVE_EXE "mpiimport-collective" /* in <prefix>/libexec */
#define PRELOAD_LIB "libmpiimport_preload.so"

static const char usage[] =
    "usage: mpiimport stage IMAGE\n"
    "       mpiimport unstage IMAGE\n"
    "       mpiimport run [--stage] --image IMAGE -- CMD [ARGS...]\n"
    "\n"
    "  stage    stage a packed image (python3 -m mpiimport pack) on this node, for every\n"
    "           later job step. Run it as a step of one task per node:\n"
    "             srun --mpi=pmix --ntasks-per-node=1 mpiimport stage IMAGE\n"
    "             mpirun --map-by ppr:1:node mpiimport stage IMAGE\n"
    "           rank 0 alone reads IMAGE and sends it to the others (transport ofi or ucx,\n"
    "           bootstrapped through PMIx); outside a launcher the one process stages it\n"
    "  unstage  remove this node's stage of IMAGE\n"
    "  run      run CMD with the dynamic loader, its file-system calls (and, for Python,\n"
    "           imports) served from this node's stage of IMAGE: no communication, and no\n"
    "           shared-file-system call for what the image holds. Not staged: CMD runs plainly,\n"
    "           saying so; with --stage, rank 0 reads IMAGE and each node stages it for this\n"
    "           step first (its last process removes it): only for a CMD that does not start\n"
    "           MPI/PMIx itself, since Open MPI 4 refuses MPI_Init in a process whose rank\n"
    "           has already spoken to PMIx\n"
    "\n"
    "Settings: MPIIMPORT_STAGE_DIR (default /dev/shm), MPIIMPORT_TIMEOUT, MPIIMPORT_TRANSPORT,\n"
    "MPIIMPORT_RANKS_PER_NODE, MPIIMPORT_VERBOSE.\n";

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

/* <directory of this executable>/../lib/<name> (the build tree and the
 * install tree have the same shape). */
/* <this command's directory>/../<dir>/<name>, when it is a regular file. */
static int beside_path(const char *dir, const char *name, char *out, size_t cap)
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
    /* (the collective command lives in libexec/, its libraries in lib/) */
    size_t len = strlen(exe);
    if (len >= 8 && strcmp(exe + len - 8, "/libexec") == 0)
        exe[len - 8] = '\0';
    else if ((slash = strrchr(exe, '/')) != NULL && strcmp(slash, "/bin") == 0)
        *slash = '\0';
    else if (snprintf(exe + len, sizeof exe - len, "/..") >= (int)(sizeof exe - len))
        return -1;
    int w = snprintf(out, cap, "%s/%s/%s", exe, dir, name);
    struct stat sb;
    return w > 0 && (size_t)w < cap && stat(out, &sb) == 0 && S_ISREG(sb.st_mode) ? 0 : -1;
}

static int lib_path(const char *name, char *out, size_t cap) { return beside_path("lib", name, out, cap); }

/* Prepends lib to the ':'-separated list in the environment variable var. */
static int prepend_env(const char *var, const char *lib)
{
    char value[2 * PATH_MAX + 64];
    const char *old = getenv(var);
    int w = old != NULL && old[0] ? snprintf(value, sizeof value, "%s:%s", lib, old)
                                   : snprintf(value, sizeof value, "%s", lib);
    return w > 0 && (size_t)w < sizeof value ? setenv(var, value, 1) : -1;
}

#ifndef MPIIMPORT_FRONT_END
/* Under a parallel launcher that gives no PMIx server (srun without
 * --mpi=pmix): staging in every process would read the image once per rank. */
static int launched_without_pmix(void)
{
    return getenv("PMIX_RANK") == NULL &&
           (getenv("SLURM_PROCID") != NULL || getenv("OMPI_COMM_WORLD_RANK") != NULL ||
            getenv("PMI_RANK") != NULL);
}

#endif

#ifdef MPIIMPORT_FRONT_END
/* Execs the collective command with this command line (returns only when it
 * cannot, after saying why). */
static void exec_collective(const char *cmd, char **argv)
{
    char exe[PATH_MAX + 64];
    if (beside_path("libexec", COLLECTIVE_EXE, exe, sizeof exe) != 0) {
        fprintf(stderr, "mpiimport %s: %s not found beside this command (libexec/): cannot stage on every "
                "node at once\n", cmd, COLLECTIVE_EXE);
        return;
    }
    execv(exe, argv);
    fprintf(stderr, "mpiimport %s: cannot run %s: %s\n", cmd, exe, strerror(errno));
}
#else
/* The transport for staging: MPIIMPORT_TRANSPORT when the launcher has it,
 * else the first compiled one bootstrapped through PMIx; "self" outside a
 * launcher. NULL (why in err) when none can be used. */
static const mpii_transport_ops *stage_transport(const mpii_config *cfg, char *err, size_t cap)
{
    if (getenv("PMIX_RANK") == NULL && !launched_without_pmix())
        return &mpii_self_ops;
    if (launched_without_pmix()) {
        snprintf(err, cap, "this launcher gives no PMIx server (use mpirun, or srun --mpi=pmix)");
        return NULL;
    }
    const mpii_transport_ops *ops = cfg->transport[0] ? mpii_transport_lookup(cfg->transport) : NULL;
    if (ops != NULL && ops != &mpii_self_ops)
        return ops;
    ops = mpii_transport_at(0);
    if (ops == NULL || ops == &mpii_self_ops) {
        snprintf(err, cap, "this build has no transport that starts without MPI (ofi, ucx: "
                           "cmake -DTRANSPORT=\"mpi;ofi\")");
        return NULL;
    }
    return ops;
}

/* Stages image on every node of the job (collective): rank 0 reads it, one
 * process per node stages it. for_this_step: the stage is this step's (see
 * mpii_distribute_image). Prints why not, and with verbose what it did. */
static mpii_status stage_collectively(const mpii_config *cfg, const char *cmd, const char *image,
                                      int for_this_step, int verbose, mpii_image_job *job)
{
    char err[512] = "";
    memset(job, 0, sizeof *job);
    const mpii_transport_ops *ops = stage_transport(cfg, err, sizeof err);
    if (ops == NULL) {
        fprintf(stderr, "mpiimport %s: cannot stage %s on every node: %s\n", cmd, image, err);
        return MPII_ERR_NOTFOUND;
    }
    mpii_transport_options opt = {.ranks_per_node = cfg->ranks_per_node};
    mpii_transport *t = NULL;
    mpii_status st = ops->init(&opt, &t, err, sizeof err);
    if (st != MPII_OK) {
        fprintf(stderr, "mpiimport %s: cannot start the %s transport to stage %s (%s)\n", cmd, ops->name,
                image, err[0] ? err : mpii_strerror(st));
        return st;
    }
    st = mpii_distribute_image(ops, t, cfg->stage_dir, image, cfg->timeout_s, for_this_step, job, err,
                               sizeof err);
    int rank = ops->rank(t), size = ops->size(t);
    ops->finalize(t);
    if (st != MPII_OK) {
        fprintf(stderr, "mpiimport %s: rank %d: %s was not staged on this node (%s)\n", cmd, rank, image,
                err[0] ? err : mpii_strerror(st));
        return st;
    }
    if (verbose && job->leader && job->already)
        printf("mpiimport %s: rank %d of %d: %s is staged already on this node\n", cmd, rank, size, image);
    else if (verbose && job->leader && job->staged)
        printf("mpiimport %s: rank %d of %d: staged %s on this node (%llu files, %.1f MiB, sent by "
               "rank 0 over %s)\n", cmd, rank, size, image, (unsigned long long)job->files,
               (double)job->bytes / 1048576.0, ops->name);
    return MPII_OK;
}

#endif /* MPIIMPORT_FRONT_END */

static int cmd_stage(const char *image, int stage, char **argv)
{
    mpii_config cfg;
    if (load_config(&cfg) != 0)
        return 2;
    char root[4096];
    mpii_status st = mpii_stage_image_root(cfg.stage_dir, image, root, sizeof root);
    char why[256] = "";
    /* what killed jobs and stagers of this user left on this node (stages,
     * half-written staged images, transport files): never another user's */
    size_t swept = mpii_stage_sweep(cfg.stage_dir, "/dev/shm");
    (void)swept;
    if (st == MPII_OK && stage && getenv("PMIX_RANK") != NULL) {
        /* a job step of several tasks: rank 0 alone reads the image */
#ifdef MPIIMPORT_FRONT_END
        exec_collective("stage", argv);
        snprintf(why, sizeof why, "no collective staging");
#else
        (void)argv;
        if (stage_transport(&cfg, why, sizeof why) != NULL) {
            mpii_image_job job;
            st = stage_collectively(&cfg, "stage", image, 0, 1, &job);
            return st == MPII_OK ? 0 : 1;
        }
#endif
        fprintf(stderr, "mpiimport stage: %s; each task reads %s itself\n", why, image);
    }
    int flag = 0;
    uint64_t files = 0, bytes = 0;
    if (st == MPII_OK)
        st = stage ? mpii_stage_image(cfg.stage_dir, image, cfg.timeout_s, &flag, &files, &bytes)
                   : mpii_unstage_image(cfg.stage_dir, image, &flag);
    if (st == MPII_ERR_UNSAFE) {
        /* the name is taken: never the image's fault, and not ours to remove */
        struct stat sb;
        char owner[64] = "";
        if (lstat(root, &sb) == 0 && sb.st_uid != geteuid())
            snprintf(owner, sizeof owner, " (made by uid %lu)", (unsigned long)sb.st_uid);
        fprintf(stderr, "mpiimport %s: %s: %s%s is not ours (another user's, or open to others, or a "
                "link): nothing %s; jobs run plainly until it is gone (its owner or an administrator "
                "removes it)\n", stage ? "stage" : "unstage", image, root, owner, stage ? "staged" : "removed");
        return 1;
    }
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

/* LD_LIBRARY_PATH's directories that the stage holds, pointed at their
 * staged copies: the dynamic loader then stat()s their glibc-hwcaps/, tls/
 * and platform subdirectories in node-local memory, not on the shared file
 * system (those stat()s cannot be audited). The audit library answers each
 * candidate there as its original (what the image lacks is looked for in
 * the original directory), and the preload library gives the program back
 * the original value (MPIIMPORT_LD_LIBRARY_PATH). */
static void stage_library_path(const mpii_image *index, const char *root)
{
    const char *llp = getenv("LD_LIBRARY_PATH");
    if (llp == NULL || llp[0] == '\0' || strlen(llp) >= 8192)
        return;
    char out[16384], dir[8192], staged[8192];
    size_t o = 0;
    int changed = 0;
    for (const char *p = llp;;) {
        const char *end = strchr(p, ':');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        memcpy(dir, p, n);
        dir[n] = '\0';
        const char *use = dir;
        struct stat sb;
        if (dir[0] == '/' &&
            mpii_stage_image_resolve(index, root, dir, staged, sizeof staged) == MPII_ANSWER_DIR &&
            snprintf(staged, sizeof staged, "%s%s", root, dir) < (int)sizeof staged &&
            stat(staged, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            use = staged;
            changed = 1;
        }
        int w = snprintf(out + o, sizeof out - o, "%s%s", o > 0 ? ":" : "", use);
        if (w < 0 || (size_t)w >= sizeof out - o)
            return; /* too long: leave it as it is */
        o += (size_t)w;
        if (end == NULL)
            break;
        p = end + 1;
    }
    /* (the staged value again for the program's own children: the preload
     * library's execve passes it on in place of the original) */
    if (changed && setenv("MPIIMPORT_LD_LIBRARY_PATH", llp, 1) == 0 &&
        (setenv("MPIIMPORT_LD_LIBRARY_PATH_STAGED", out, 1) != 0 || setenv("LD_LIBRARY_PATH", out, 1) != 0)) {
        int rc = unsetenv("MPIIMPORT_LD_LIBRARY_PATH");
        (void)rc;
    }
}

static int cmd_run(const char *image, int stage_here, char **argv, char **whole)
{
    mpii_config cfg;
    char root[4096], audit[PATH_MAX + 64], preload[PATH_MAX + 64], pid[32];
    mpii_image *index = NULL;
    mpii_stage_hold hold = MPII_STAGE_HOLD_INIT;
    mpii_status st = MPII_ERR_INVALID;
    int temporary = 0, said = 0;
    if (load_config(&cfg) == 0) {
        st = mpii_stage_image_load(cfg.stage_dir, image, root, sizeof root, &hold, &index);
        if (st == MPII_OK && mpii_stage_has_registry(root)) { /* a `run --stage` made it */
            /* another step's (a run that staged it): join it, so that the
             * last process of either step removes it */
            temporary = mpii_stage_register(root) == MPII_OK;
        } else if (st == MPII_ERR_NOTFOUND && stage_here) {
#ifdef MPIIMPORT_FRONT_END
            exec_collective("run", whole);
            said = 1;
#else
            (void)whole;
            size_t swept = mpii_stage_sweep(cfg.stage_dir, "/dev/shm"); /* what killed steps left */
            (void)swept;
            mpii_image_job job;
            st = stage_collectively(&cfg, "run", image, 1, cfg.verbose, &job);
            temporary = job.temporary;
            said = st != MPII_OK;
            if (st == MPII_OK)
                st = mpii_stage_image_load(cfg.stage_dir, image, root, sizeof root, &hold, &index);
#endif
        }
    }
    char program[8192];
    int staged_program = 0;
    if (st == MPII_OK) {
        /* an interpreter on the shared file system runs from its staged copy,
         * reached through the held root (the exec'd process holds it anew,
         * by name: MPIIMPORT_AUDIT_ROOT, LD_LIBRARY_PATH's staged entries) */
        staged_program = mpii_stage_image_program(index, hold.path, argv[0], program, sizeof program);
        stage_library_path(index, root);
        mpii_image_destroy(index); /* checked; the audit library reads it in each process */
        snprintf(pid, sizeof pid, "%ld", (long)getpid());
        if (lib_path(AUDIT_LIB, audit, sizeof audit) != 0 ||
            lib_path(PRELOAD_LIB, preload, sizeof preload) != 0) {
            fprintf(stderr, "mpiimport run: %s or %s not found beside this command; running %s plainly\n",
                    AUDIT_LIB, PRELOAD_LIB, argv[0]);
        } else {
            /* MPIIMPORT_RUN_PID: this process (the same after exec) leaves the
             * step's stage at exit, and the last one removes it */
            if (prepend_env("LD_AUDIT", audit) == 0 && prepend_env("LD_PRELOAD", preload) == 0 &&
                setenv("MPIIMPORT_AUDIT_ROOT", root, 1) == 0 && setenv("MPIIMPORT_IMAGE", image, 1) == 0 &&
                setenv("MPIIMPORT_STAGED", "1", 1) == 0 &&
                (!temporary || setenv("MPIIMPORT_RUN_PID", pid, 1) == 0)) {
                if (staged_program)
                    execv(program, argv); /* argv[0] stays the original path */
                execvp(argv[0], argv);
                fprintf(stderr, "mpiimport run: cannot run %s: %s\n", argv[0], strerror(errno));
                return 127;
            }
            fprintf(stderr, "mpiimport run: cannot set the environment; running %s plainly\n", argv[0]);
        }
    } else if (said) {
        fprintf(stderr, "mpiimport run: running %s plainly\n", argv[0]);
    } else if (st == MPII_ERR_NOTFOUND) {
        fprintf(stderr, "mpiimport run: %s is not staged on this node (run `mpiimport stage %s` on "
                "every node first, one task per node; or `mpiimport run --stage` for a program that "
                "does not start MPI itself); running %s plainly\n", image, image, argv[0]);
    } else {
        fprintf(stderr, "mpiimport run: the stage of %s is refused (%s); running %s plainly\n", image,
                mpii_strerror(st), argv[0]);
    }
    if (temporary) {
        int last = 0;
        if (mpii_stage_leave(root, &last) == MPII_OK && last && mpii_stage_discard(root) != MPII_OK)
            fprintf(stderr, "mpiimport run: cannot remove %s\n", root);
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
        return cmd_stage(argv[2], 1, argv);
    if (argc == 3 && strcmp(argv[1], "unstage") == 0)
        return cmd_stage(argv[2], 0, argv);
    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        const char *image = NULL;
        int stage_here = 0, i = 2;
        for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
            if (strcmp(argv[i], "--image") == 0 && i + 1 < argc)
                image = argv[++i];
            else if (strncmp(argv[i], "--image=", 8) == 0)
                image = argv[i] + 8;
            else if (strcmp(argv[i], "--stage") == 0)
                stage_here = 1;
            else
                break;
        }
        if (i < argc && strcmp(argv[i], "--") == 0)
            i++;
        if (image == NULL || i >= argc) {
            fprintf(stderr, "mpiimport run: name the image and the command: "
                            "mpiimport run [--stage] --image IMAGE -- CMD [ARGS...]\n");
            return 2;
        }
        return cmd_run(image, stage_here, argv + i, argv);
    }
    fputs(usage, stderr);
    return 2;
}
