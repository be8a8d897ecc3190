/* mpiimport_preload.c — LD_PRELOAD library of `mpiimport run`: a process's
 * own file-system calls under the staged image answered from the node's
 * stage (the audit library, mpiimport_audit.c, does the same for ld.so).
 *
 * For an absolute path P (relative paths and *at() calls on another
 * directory pass through), mpii_stage_image_resolve() says:
 *   STAGED  open/fopen for reading, stat, access: the staged copy
 *           <root>P (same bytes; its mtime set to the original's, so a
 *           bytecode cache checks out as it does against the original);
 *   ABSENT  the same calls, lstat, opendir, readlink: ENOENT, with no call
 *           on the shared file system;
 *   DIR     stat, access: the staged directory when it exists;
 *   else    the real call on P.
 * Writing (O_WRONLY, O_RDWR, O_CREAT, fopen "w"/"a"/"+") always goes to P.
 * lstat and readlink of a staged file pass through (the stage holds the
 * target's bytes, not the link). A directory listing (opendir, an
 * O_DIRECTORY open) comes from the staged directory only when that lists
 * exactly the names of the image's listing (a stage holds only what its
 * image holds); otherwise it passes through. The program sees the
 * original paths; descriptors it opens refer to the staged copies.
 *
 * A stage that `mpiimport run` made for its job step (MPIIMPORT_RUN_PID:
 * the launcher's pid, which exec kept) is left at exit by that process, and
 * removed by the step's last one on the node (stage_registry.c); a process
 * killed outright leaves that to the next start-up sweep.
 *
 * The image's index is read once, at load (MPIIMPORT_AUDIT_ROOT, set by
 * `mpiimport run` after it checked the stage's seal). Without it every call
 * passes through. The interposition API has no context argument: the one
 * struct below is this library's state. Never prints. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpiimport/image.h"
#include "mpiimport/path_log.h"
#include "mpiimport/stage.h"

#define PATH_CAP 8192

static struct preload_state {
    mpii_image *index;
    char root[4096];
    int loading;
    mpii_path_log log; /* MPIIMPORT_RECORD_PATHS: what passed through */
    char log_busy;     /* a spin lock around log (threads) */
} g_preload;

__attribute__((constructor)) static void preload_init(void)
{
    struct preload_state *s = &g_preload;
    s->loading = 1;
    mpii_status lst = mpii_path_log_open(&s->log, getenv("MPIIMPORT_RECORD_PATHS"), "preload");
    (void)lst; /* not recording is the answer to any failure here */
    s->loading = 0;
    const char *root = getenv("MPIIMPORT_AUDIT_ROOT");
    if (root == NULL || root[0] != '/' || strlen(root) >= sizeof s->root)
        return;
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/.mpiimport/index", root) >= (int)sizeof path)
        return;
    uint8_t *buf = NULL;
    size_t len = 0;
    s->loading = 1;
    mpii_status st = mpii_read_file(path, O_NOFOLLOW, 1, &buf, &len);
    s->loading = 0;
    if (st != MPII_OK)
        return;
    mpii_image *img = NULL;
    if (mpii_image_parse(buf, len, &img, NULL, NULL, 0) == MPII_OK) {
        memcpy(s->root, root, strlen(root) + 1);
        s->index = img;
    }
    free(buf);
}

__attribute__((destructor)) static void preload_fini(void)
{
    const struct preload_state *s = &g_preload;
    const char *pid = getenv("MPIIMPORT_RUN_PID");
    char mine[32];
    if (s->index == NULL || pid == NULL ||
        snprintf(mine, sizeof mine, "%ld", (long)getpid()) >= (int)sizeof mine || strcmp(pid, mine) != 0)
        return;
    int last = 0;
    if (mpii_stage_leave(s->root, &last) == MPII_OK && last) {
        mpii_status st = mpii_stage_discard(s->root);
        (void)st; /* at exit: nothing to report to; a later sweep retries */
    }
}

/* The answer for path (absolute only); staged receives the stage's path.
 * What the image cannot answer passes through, and is logged for the next
 * pack when MPIIMPORT_RECORD_PATHS asks for it. */
static mpii_stage_answer answer(const char *path, char *staged)
{
    struct preload_state *s = &g_preload;
    if (s->loading || path == NULL || path[0] != '/')
        return MPII_ANSWER_UNKNOWN;
    mpii_stage_answer a = s->index != NULL ? mpii_stage_image_resolve(s->index, s->root, path, staged, PATH_CAP)
                                           : MPII_ANSWER_UNKNOWN;
    if (a == MPII_ANSWER_UNKNOWN && s->log.fd >= 0) {
        while (__atomic_test_and_set(&s->log_busy, __ATOMIC_ACQUIRE))
            ;
        s->loading = 1; /* (the log writes; nothing it calls comes back here) */
        mpii_path_log_add(&s->log, path);
        s->loading = 0;
        __atomic_clear(&s->log_busy, __ATOMIC_RELEASE);
    }
    return a;
}

/* (not "path != NULL" where path is declared nonnull: a program may still
 * pass NULL, and libc then answers EFAULT) */
static int is_absolute(const char *path) { return path != NULL && path[0] == '/'; }
static int has_slash(const char *path) { return path != NULL && strchr(path, '/') != NULL; }

static int reads_only(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) == 0; }

static void *real(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

/* The next definition of name (libc's), looked up once per function. */
#define REAL(type, name)                                                       \
    typedef __typeof__(type) name##_fn;                                        \
    static name##_fn real_##name;                                              \
    if (real_##name == NULL)                                                   \
        real_##name = (name##_fn)real(#name)

/* The path an open-like call should use: P, the staged copy, or NULL with
 * errno ENOENT. for_read: a read-only use (open for reading, stat, access). */
static const char *route(const char *path, char *staged, int for_read)
{
    if (!for_read)
        return path;
    switch (answer(path, staged)) {
    case MPII_ANSWER_STAGED:
        return staged;
    case MPII_ANSWER_ABSENT:
        errno = ENOENT;
        return NULL;
    default:
        return path;
    }
}

/* As route, and a directory the image lists answers from its staged
 * directory when there is one (stat, access). */
static const char *route_dir(const char *path, char *staged, int for_read)
{
    if (for_read && answer(path, staged) == MPII_ANSWER_DIR) {
        REAL(int (*)(const char *, struct stat *), stat);
        struct stat sb;
        if (snprintf(staged, PATH_CAP, "%s%s", g_preload.root, path) < PATH_CAP &&
            real_stat != NULL && real_stat(staged, &sb) == 0 && S_ISDIR(sb.st_mode))
            return staged;
        return path;
    }
    return route(path, staged, for_read);
}

static const char *staged_listing(const char *path, char *staged);

/* An O_DIRECTORY open for reading: absent ──► ENOENT; a directory whose
 * staged copy lists the same names ──► the staged copy; else P. */
static const char *directory(const char *path, char *staged, int flags)
{
    if (!reads_only(flags))
        return path;
    if (answer(path, staged) == MPII_ANSWER_ABSENT) {
        errno = ENOENT;
        return NULL;
    }
    const char *whole = staged_listing(path, staged);
    return whole != NULL ? whole : path;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

/* ---- open ---- */

#define DEFINE_OPEN(name)                                                      \
    int name(const char *path, int flags, ...)                                 \
    {                                                                          \
        va_list ap;                                                            \
        va_start(ap, flags);                                                   \
        mode_t mode = mode_arg(flags, ap);                                     \
        va_end(ap);                                                            \
        REAL(int (*)(const char *, int, ...), name);                           \
        char staged[PATH_CAP];                                                 \
        const char *p = (flags & O_DIRECTORY) ? directory(path, staged, flags) \
                        : route(path, staged, reads_only(flags));           \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(p, flags, mode);                                    \
    }
DEFINE_OPEN(open)
DEFINE_OPEN(open64)

#define DEFINE_OPENAT(name)                                                    \
    int name(int dirfd, const char *path, int flags, ...)                      \
    {                                                                          \
        va_list ap;                                                            \
        va_start(ap, flags);                                                   \
        mode_t mode = mode_arg(flags, ap);                                     \
        va_end(ap);                                                            \
        REAL(int (*)(int, const char *, int, ...), name);                      \
        char staged[PATH_CAP];                                                 \
        const char *p = path;                                                  \
        if (is_absolute(path))                                                 \
            p = (flags & O_DIRECTORY) ? directory(path, staged, flags)         \
                                      : route(path, staged, reads_only(flags)); \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(dirfd, p, flags, mode);                             \
    }
DEFINE_OPENAT(openat)
DEFINE_OPENAT(openat64)

#define DEFINE_OPEN_2(name)                                                    \
    int name(const char *path, int flags)                                      \
    {                                                                          \
        REAL(int (*)(const char *, int), name);                                \
        char staged[PATH_CAP];                                                 \
        const char *p = (flags & O_DIRECTORY) ? directory(path, staged, flags) \
                        : route(path, staged, reads_only(flags));           \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(p, flags);                                          \
    }
DEFINE_OPEN_2(__open_2)
DEFINE_OPEN_2(__open64_2)

#define DEFINE_FOPEN(name)                                                     \
    FILE *name(const char *path, const char *mode)                             \
    {                                                                          \
        REAL(FILE * (*)(const char *, const char *), name);                    \
        char staged[PATH_CAP];                                                 \
        int ro = mode != NULL && mode[0] == 'r' && strchr(mode, '+') == NULL;  \
        const char *p = route(path, staged, ro);                            \
        if (p == NULL)                                                         \
            return NULL;                                                       \
        return real_##name(p, mode);                                           \
    }
DEFINE_FOPEN(fopen)
DEFINE_FOPEN(fopen64)

/* ---- stat ---- */

#define DEFINE_STAT(name, type)                                                \
    int name(const char *path, type *sb)                                       \
    {                                                                          \
        REAL(int (*)(const char *, type *), name);                             \
        char staged[PATH_CAP];                                                 \
        const char *p = route_dir(path, staged, 1);                            \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(p, sb);                                             \
    }
DEFINE_STAT(stat, struct stat)
DEFINE_STAT(stat64, struct stat64)

/* lstat: a staged file is a copy of the target: only absence is answered */
#define DEFINE_LSTAT(name, type)                                               \
    int name(const char *path, type *sb)                                       \
    {                                                                          \
        REAL(int (*)(const char *, type *), name);                             \
        char staged[PATH_CAP];                                                 \
        if (answer(path, staged) == MPII_ANSWER_ABSENT) {                      \
            errno = ENOENT;                                                    \
            return -1;                                                         \
        }                                                                      \
        return real_##name(path, sb);                                          \
    }
DEFINE_LSTAT(lstat, struct stat)
DEFINE_LSTAT(lstat64, struct stat64)

#define DEFINE_FSTATAT(name, type)                                             \
    int name(int dirfd, const char *path, type *sb, int flags)                 \
    {                                                                          \
        REAL(int (*)(int, const char *, type *, int), name);                   \
        char staged[PATH_CAP];                                                 \
        const char *p = path;                                                  \
        if (is_absolute(path)) {                                  \
            if (flags & AT_SYMLINK_NOFOLLOW) {                                 \
                if (answer(path, staged) == MPII_ANSWER_ABSENT) {              \
                    errno = ENOENT;                                            \
                    return -1;                                                 \
                }                                                              \
            } else if ((p = route_dir(path, staged, 1)) == NULL) {             \
                return -1;                                                     \
            }                                                                  \
        }                                                                      \
        return real_##name(dirfd, p, sb, flags);                               \
    }
DEFINE_FSTATAT(fstatat, struct stat)
DEFINE_FSTATAT(fstatat64, struct stat64)

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *sb)
{
    REAL(int (*)(int, const char *, int, unsigned int, struct statx *), statx);
    char staged[PATH_CAP];
    const char *p = path;
    if (is_absolute(path)) {
        if (flags & AT_SYMLINK_NOFOLLOW) {
            if (answer(path, staged) == MPII_ANSWER_ABSENT) {
                errno = ENOENT;
                return -1;
            }
        } else if ((p = route_dir(path, staged, 1)) == NULL) {
            return -1;
        }
    }
    return real_statx(dirfd, p, flags, mask, sb);
}

/* ---- access, readlink, opendir ---- */

int access(const char *path, int amode)
{
    REAL(int (*)(const char *, int), access);
    char staged[PATH_CAP];
    const char *p = route_dir(path, staged, (amode & W_OK) == 0);
    if (p == NULL)
        return -1;
    return real_access(p, amode);
}

int faccessat(int dirfd, const char *path, int amode, int flags)
{
    REAL(int (*)(int, const char *, int, int), faccessat);
    char staged[PATH_CAP];
    const char *p = path;
    if (is_absolute(path) && (p = route_dir(path, staged, (amode & W_OK) == 0)) == NULL)
        return -1;
    return real_faccessat(dirfd, p, amode, flags);
}

ssize_t readlink(const char *path, char *buf, size_t cap)
{
    REAL(ssize_t (*)(const char *, char *, size_t), readlink);
    char staged[PATH_CAP];
    if (answer(path, staged) == MPII_ANSWER_ABSENT) {
        errno = ENOENT;
        return -1;
    }
    return real_readlink(path, buf, cap);
}

/* ---- exec: a program under the image (an interpreter on the shared file
 * system) is executed from its staged copy, argv unchanged (argv[0] keeps
 * the original path, so Python's sys.executable and prefix stay the
 * original ones; /proc/self/exe shows the copy). Only ELF executables: a
 * script's interpreter would be given the staged path of the script. ---- */

static int staged_elf(const char *path, char *staged)
{
    const struct preload_state *s = &g_preload;
    return s->index != NULL && !s->loading &&
           mpii_stage_image_program(s->index, s->root, path, staged, PATH_CAP);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    REAL(int (*)(const char *, char *const[], char *const[]), execve);
    char staged[PATH_CAP];
    return real_execve(staged_elf(path, staged) ? staged : path, argv, envp);
}

int execv(const char *path, char *const argv[])
{
    extern char **environ;
    return execve(path, argv, environ);
}

/* A command name without '/' is searched along PATH by libc, which then
 * calls its own execve: that search passes through. */
int execvp(const char *file, char *const argv[])
{
    REAL(int (*)(const char *, char *const[]), execvp);
    if (has_slash(file))
        return execv(file, argv);
    return real_execvp(file, argv);
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    REAL(int (*)(const char *, char *const[], char *const[]), execvpe);
    if (has_slash(file))
        return execve(file, argv, envp);
    return real_execvpe(file, argv, envp);
}

/* The staged directory of path, when it lists exactly what the image's
 * listing of path holds (a stage holds only what its image holds: a
 * directory of a packed program's image usually lacks names, one of a
 * `pack --prefix` image does not). Node-local calls only. */
static const char *staged_listing(const char *path, char *staged)
{
    const mpii_entry *listing = NULL;
    if (answer(path, staged) != MPII_ANSWER_DIR || strcmp(path, "/") == 0 ||
        (listing = mpii_image_lookup(g_preload.index, MPII_ENTRY_LISTING, path)) == NULL ||
        snprintf(staged, PATH_CAP, "%s%s", g_preload.root, path) >= PATH_CAP)
        return NULL;
    REAL(DIR * (*)(const char *), opendir);
    REAL(struct dirent * (*)(DIR *), readdir);
    REAL(int (*)(DIR *), closedir);
    DIR *d = real_opendir != NULL ? real_opendir(staged) : NULL;
    if (d == NULL)
        return NULL;
    size_t seen = 0;
    int same = 1;
    struct dirent *e;
    while (same && (e = real_readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        seen++;
        same = mpii_listing_find(listing, e->d_name) != 0;
    }
    if (real_closedir(d) != 0)
        same = 0;
    return same && seen == mpii_listing_count(listing) ? staged : NULL;
}

DIR *opendir(const char *path)
{
    REAL(DIR * (*)(const char *), opendir);
    char staged[PATH_CAP];
    if (answer(path, staged) == MPII_ANSWER_ABSENT) {
        errno = ENOENT;
        return NULL;
    }
    const char *whole = staged_listing(path, staged);
    return real_opendir(whole != NULL ? whole : path);
}
