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
 * lstat and readlink of a path the image holds (a file or a listed
 * directory) are answered when its directory's listing says it is no
 * symbolic link (the stage holds the target's bytes, not the link): lstat
 * as stat, readlink EINVAL; a link's pass through. A directory listing (opendir, an
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
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpiimport/checksum.h"
#include "mpiimport/image.h"
#include "mpiimport/path_log.h"
#include "mpiimport/stage.h"

#define PATH_CAP 8192

static struct preload_state {
    mpii_image *index;
    char root[4096];
    int loading;
    mpii_path_log log; /* MPIIMPORT_RECORD_PATHS: what passed through */
    char *roots;       /* .mpiimport/roots: "d PATH\n" / "l PATH\n" for the image's tops */
    char log_busy;     /* a spin lock around log (threads) */
} g_preload;

__attribute__((constructor)) static void preload_init(void)
{
    struct preload_state *s = &g_preload;
    /* the program sees LD_LIBRARY_PATH as it was (`mpiimport run` pointed
     * ld.so's copy at staged directories) */
    const char *llp = getenv("MPIIMPORT_LD_LIBRARY_PATH");
    if (llp != NULL) {
        int rc = setenv("LD_LIBRARY_PATH", llp, 1);
        (void)rc; /* ld.so has read it already; only what the program sees */
    }
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
    if (s->index != NULL && snprintf(path, sizeof path, "%s/.mpiimport/roots", root) < (int)sizeof path) {
        uint8_t *text = NULL;
        size_t tlen = 0;
        s->loading = 1;
        if (mpii_read_file(path, O_NOFOLLOW, 1, &text, &tlen) == MPII_OK) {
            char *r = realloc(text, tlen + 1); /* NUL-terminated, for strstr */
            if (r != NULL) {
                r[tlen] = '\0';
                s->roots = r;
            } else {
                free(text);
            }
        }
        s->loading = 0;
    }
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

/* 1: path is a symbolic link, 0: it is not, -1: unknown; from its
 * directory's listing, or for the tops of the image from the stage's roots. */
static int is_link(const char *path)
{
    const struct preload_state *s = &g_preload;
    int l = mpii_stage_image_is_link(s->index, path);
    if (l >= 0 || s->roots == NULL)
        return l;
    size_t n = strlen(path);
    for (const char *r = s->roots; (r = strstr(r, path)) != NULL; r += n) {
        if (r - s->roots >= 2 && r[-1] == ' ' && (r - 2 == s->roots || r[-3] == '\n') && r[n] == '\n')
            return r[-2] == 'l';
    }
    return -1;
}

/* lstat(): NULL with errno ENOENT when absent; the staged copy (file or
 * directory) when the listing says path is no link; else path itself. */
static const char *route_nofollow(const char *path, char *staged)
{
    mpii_stage_answer a = answer(path, staged);
    if (a == MPII_ANSWER_ABSENT) {
        errno = ENOENT;
        return NULL;
    }
    if ((a == MPII_ANSWER_STAGED || a == MPII_ANSWER_DIR) && is_link(path) == 0)
        return route_dir(path, staged, 1);
    return path;
}

#define DEFINE_LSTAT(name, type)                                               \
    int name(const char *path, type *sb)                                       \
    {                                                                          \
        REAL(int (*)(const char *, type *), name);                             \
        char staged[PATH_CAP];                                                 \
        const char *p = route_nofollow(path, staged);                          \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(p, sb);                                             \
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
                if ((p = route_nofollow(path, staged)) == NULL)                \
                    return -1;                                                 \
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
            if ((p = route_nofollow(path, staged)) == NULL)
                return -1;
        } else if ((p = route_dir(path, staged, 1)) == NULL) {
            return -1;
        }
    }
    return real_statx(dirfd, p, flags, mask, sb);
}

/* The pre-2.33 names (__xstat, __lxstat, __fxstatat and their 64-bit
 * forms), which programs built against an older glibc still call. */
#define DEFINE_XSTAT(name, type, route_fn)                                     \
    int name(int ver, const char *path, type *sb)                              \
    {                                                                          \
        REAL(int (*)(int, const char *, type *), name);                        \
        char staged[PATH_CAP];                                                 \
        const char *p = route_fn;                                              \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(ver, p, sb);                                        \
    }
DEFINE_XSTAT(__xstat, struct stat, route_dir(path, staged, 1))
DEFINE_XSTAT(__xstat64, struct stat64, route_dir(path, staged, 1))
DEFINE_XSTAT(__lxstat, struct stat, route_nofollow(path, staged))
DEFINE_XSTAT(__lxstat64, struct stat64, route_nofollow(path, staged))

#define DEFINE_FXSTATAT(name, type)                                            \
    int name(int ver, int dirfd, const char *path, type *sb, int flags)        \
    {                                                                          \
        REAL(int (*)(int, int, const char *, type *, int), name);              \
        char staged[PATH_CAP];                                                 \
        const char *p = path;                                                  \
        if (is_absolute(path) &&                                               \
            (p = (flags & AT_SYMLINK_NOFOLLOW) ? route_nofollow(path, staged)  \
                                               : route_dir(path, staged, 1)) == NULL) \
            return -1;                                                         \
        return real_##name(ver, dirfd, p, sb, flags);                          \
    }
DEFINE_FXSTATAT(__fxstatat, struct stat)
DEFINE_FXSTATAT(__fxstatat64, struct stat64)

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
    mpii_stage_answer a = answer(path, staged);
    if (a == MPII_ANSWER_ABSENT) {
        errno = ENOENT;
        return -1;
    }
    if ((a == MPII_ANSWER_STAGED || a == MPII_ANSWER_DIR) && is_link(path) == 0) {
        errno = EINVAL; /* no symbolic link, as its directory's listing says */
        return -1;
    }
    return real_readlink(path, buf, cap);
}

/* ---- realpath: glibc's makes its own readlink() and stat() calls, which
 * no interposition sees. A plain absolute path ("." and ".." and "//" go to
 * libc's) whose components the image knows to be no links resolves to
 * itself without a call; components outside the image are lstat()ed here
 * (not on the shared file system, or passing through like any call); a
 * link anywhere, or anything unclear, goes to libc's realpath. ---- */

static int plain_absolute(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || strstr(p, "//") != NULL || strstr(p, "/./") != NULL ||
        strstr(p, "/../") != NULL)
        return 0;
    return !((n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0));
}

char *realpath(const char *path, char *resolved)
{
    REAL(char *(*)(const char *, char *), realpath);
    const struct preload_state *s = &g_preload;
    size_t n = path != NULL ? strnlen(path, PATH_MAX) : 0;
    if (s->index == NULL || s->loading || n >= PATH_MAX || !plain_absolute(path, n))
        return real_realpath(path, resolved);
    char buf[PATH_MAX], staged[PATH_CAP];
    memcpy(buf, path, n + 1);
    int slash = 0;
    while (n > 1 && buf[n - 1] == '/') {
        buf[--n] = '\0';
        slash = 1;
    }
    if (slash && answer(buf, staged) != MPII_ANSWER_DIR) /* "file/": libc's says ENOTDIR */
        return real_realpath(path, resolved);
    REAL(int (*)(const char *, struct stat *), lstat);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char keep = buf[i];
        buf[i] = '\0';
        int link = is_link(buf);
        if (link < 0) {
            mpii_stage_answer a = answer(buf, staged);
            struct stat sb;
            if (a == MPII_ANSWER_ABSENT) {
                errno = ENOENT;
                return NULL;
            }
            link = a != MPII_ANSWER_UNKNOWN || real_lstat == NULL || real_lstat(buf, &sb) != 0 ||
                   S_ISLNK(sb.st_mode); /* 1: libc's realpath says what it is */
        }
        buf[i] = keep;
        if (link != 0)
            return real_realpath(path, resolved);
    }
    char *out = resolved != NULL ? resolved : malloc(PATH_MAX);
    if (out == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(out, buf, n + 1);
    return out;
}

char *canonicalize_file_name(const char *path) { return realpath(path, NULL); }

char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    if (resolved != NULL && resolvedlen < PATH_MAX)
        abort(); /* what glibc's does: the buffer cannot hold PATH_MAX bytes */
    return realpath(path, resolved);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t cap)
{
    if (is_absolute(path))
        return readlink(path, buf, cap);
    REAL(ssize_t (*)(int, const char *, char *, size_t), readlinkat);
    return real_readlinkat(dirfd, path, buf, cap);
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

/* envp with LD_LIBRARY_PATH=<the original> given its staged value again
 * (MPIIMPORT_LD_LIBRARY_PATH_STAGED), so that a child's ld.so searches the
 * stage too (its preload library shows it the original); NULL: as it is. */
static char **staged_library_path(char *const envp[])
{
    const char *orig = getenv("MPIIMPORT_LD_LIBRARY_PATH");
    const char *stg = getenv("MPIIMPORT_LD_LIBRARY_PATH_STAGED");
    if (orig == NULL || stg == NULL || envp == NULL)
        return NULL;
    size_t n = 0, at = (size_t)-1;
    for (; envp[n] != NULL; n++)
        if (strncmp(envp[n], "LD_LIBRARY_PATH=", 16) == 0 && strcmp(envp[n] + 16, orig) == 0)
            at = n;
    if (at == (size_t)-1)
        return NULL;
    char **copy = malloc((n + 1) * sizeof *copy);
    size_t len = strlen(stg) + 17;
    char *entry = malloc(len);
    if (copy == NULL || entry == NULL) {
        free(copy);
        free(entry);
        return NULL;
    }
    snprintf(entry, len, "LD_LIBRARY_PATH=%s", stg);
    for (size_t i = 0; i <= n; i++)
        copy[i] = i == at ? entry : envp[i];
    return copy;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    REAL(int (*)(const char *, char *const[], char *const[]), execve);
    char staged[PATH_CAP];
    char **env = staged_library_path(envp);
    int rc = real_execve(staged_elf(path, staged) ? staged : path, argv, env != NULL ? env : envp);
    if (env != NULL) { /* exec failed: this process goes on */
        int saved = errno;
        for (size_t i = 0; env[i] != NULL; i++)
            if (strncmp(env[i], "LD_LIBRARY_PATH=", 16) == 0 && env[i] != envp[i])
                free(env[i]);
        free(env);
        errno = saved;
    }
    return rc;
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

/* ---- opendir/readdir of a directory the image lists: read from the
 * image's listing itself, so a directory only partly packed (most of a
 * packed program's) is listed with no call on the shared file system. The
 * DIR handle is ours (a listing_dir): readdir, readdir64 (and _r),
 * rewinddir, telldir, seekdir, dirfd and closedir know it. Entries carry
 * DT_DIR / DT_REG from the listing's types (a symlink counts as what it
 * points to, as the listing records it) and DT_UNKNOWN for anything else,
 * so a caller that needs more stat()s it, which is answered as above. ---- */

#define LISTING_DIRS 256

struct listing_dir {
    const mpii_entry *listing;
    char path[PATH_CAP]; /* the original directory */
    size_t pos;          /* 0: ".", 1: "..", 2 + i: the listing's i-th name */
    int fd;              /* dirfd(): the staged directory, opened when asked */
    struct dirent64 ent;
};

static struct {
    struct listing_dir *open[LISTING_DIRS];
    int count;
    char busy;
} g_listings;

static void listings_lock(void)
{
    while (__atomic_test_and_set(&g_listings.busy, __ATOMIC_ACQUIRE))
        ;
}

static void listings_unlock(void) { __atomic_clear(&g_listings.busy, __ATOMIC_RELEASE); }

/* Ours, or NULL for a DIR of libc's. */
static struct listing_dir *ours(DIR *d)
{
    if (__atomic_load_n(&g_listings.count, __ATOMIC_ACQUIRE) == 0 || d == NULL)
        return NULL;
    struct listing_dir *found = NULL;
    listings_lock();
    for (int i = 0; i < LISTING_DIRS && found == NULL; i++)
        if (g_listings.open[i] == (struct listing_dir *)d)
            found = g_listings.open[i];
    listings_unlock();
    return found;
}

/* A listing DIR for path, or NULL (then libc's opendir does it). */
static DIR *listing_open(const char *path)
{
    const struct preload_state *s = &g_preload;
    char staged[PATH_CAP];
    const mpii_entry *listing;
    if (answer(path, staged) != MPII_ANSWER_DIR ||
        (listing = mpii_image_lookup(s->index, MPII_ENTRY_LISTING, path)) == NULL ||
        strlen(path) >= PATH_CAP)
        return NULL;
    struct listing_dir *ld = calloc(1, sizeof *ld);
    if (ld == NULL)
        return NULL;
    ld->listing = listing;
    memcpy(ld->path, path, strlen(path) + 1);
    ld->fd = -1;
    int slot = -1;
    listings_lock();
    for (int i = 0; i < LISTING_DIRS && slot < 0; i++)
        if (g_listings.open[i] == NULL)
            slot = i;
    if (slot >= 0) {
        g_listings.open[slot] = ld;
        __atomic_add_fetch(&g_listings.count, 1, __ATOMIC_RELEASE);
    }
    listings_unlock();
    if (slot < 0) {
        free(ld); /* too many open at once: libc's */
        return NULL;
    }
    return (DIR *)ld;
}

static void listing_close(struct listing_dir *ld)
{
    listings_lock();
    for (int i = 0; i < LISTING_DIRS; i++)
        if (g_listings.open[i] == ld) {
            g_listings.open[i] = NULL;
            __atomic_sub_fetch(&g_listings.count, 1, __ATOMIC_RELEASE);
        }
    listings_unlock();
    if (ld->fd >= 0) {
        int rc = close(ld->fd);
        (void)rc; /* a read-only directory descriptor */
    }
    free(ld);
}

static struct dirent64 *listing_next(struct listing_dir *ld)
{
    const char *name = NULL;
    size_t len = 0;
    mpii_dirent_type type = MPII_DIRENT_OTHER;
    if (ld->pos < 2) {
        name = ld->pos == 0 ? "." : "..";
        len = strlen(name);
        type = MPII_DIRENT_DIR;
    } else if (mpii_listing_at(ld->listing, ld->pos - 2, &name, &len, &type) != MPII_OK) {
        return NULL; /* the end (errno untouched) */
    }
    if (len >= sizeof ld->ent.d_name)
        len = sizeof ld->ent.d_name - 1;
    memset(&ld->ent, 0, sizeof ld->ent);
    memcpy(ld->ent.d_name, name, len);
    ld->ent.d_ino = (ino64_t)(mpii_checksum64(name, len, (uint64_t)(uintptr_t)ld->listing) | 1u);
    ld->pos++;
    ld->ent.d_off = (off64_t)ld->pos;
    ld->ent.d_reclen = (unsigned short)sizeof ld->ent;
    ld->ent.d_type = type == MPII_DIRENT_DIR ? DT_DIR : type == MPII_DIRENT_FILE ? DT_REG : DT_UNKNOWN;
    return &ld->ent;
}

DIR *opendir(const char *path)
{
    REAL(DIR * (*)(const char *), opendir);
    char staged[PATH_CAP];
    if (answer(path, staged) == MPII_ANSWER_ABSENT) {
        errno = ENOENT;
        return NULL;
    }
    DIR *mine = listing_open(path);
    if (mine != NULL)
        return mine;
    const char *whole = staged_listing(path, staged);
    return real_opendir(whole != NULL ? whole : path);
}

struct dirent64 *readdir64(DIR *d)
{
    struct listing_dir *ld = ours(d);
    if (ld != NULL)
        return listing_next(ld);
    REAL(struct dirent64 * (*)(DIR *), readdir64);
    return real_readdir64(d);
}

/* (struct dirent and struct dirent64 are the same on LP64 Linux) */
struct dirent *readdir(DIR *d)
{
    struct listing_dir *ld = ours(d);
    if (ld != NULL)
        return (struct dirent *)(void *)listing_next(ld);
    REAL(struct dirent * (*)(DIR *), readdir);
    return real_readdir(d);
}

/* deprecated, still exported: a program that calls them on our handle must
 * not reach libc's with it */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int readdir64_r(DIR *d, struct dirent64 *entry, struct dirent64 **result)
{
    struct listing_dir *ld = ours(d);
    if (ld == NULL) {
        REAL(int (*)(DIR *, struct dirent64 *, struct dirent64 **), readdir64_r);
        return real_readdir64_r(d, entry, result);
    }
    struct dirent64 *e = listing_next(ld);
    if (e != NULL)
        memcpy(entry, e, sizeof *entry);
    *result = e != NULL ? entry : NULL;
    return 0;
}

int readdir_r(DIR *d, struct dirent *entry, struct dirent **result)
{
    return readdir64_r(d, (struct dirent64 *)(void *)entry, (struct dirent64 **)(void *)result);
}
#pragma GCC diagnostic pop

int closedir(DIR *d)
{
    struct listing_dir *ld = ours(d);
    if (ld != NULL) {
        listing_close(ld);
        return 0;
    }
    REAL(int (*)(DIR *), closedir);
    return real_closedir(d);
}

void rewinddir(DIR *d)
{
    struct listing_dir *ld = ours(d);
    if (ld != NULL) {
        ld->pos = 0;
        return;
    }
    REAL(void (*)(DIR *), rewinddir);
    real_rewinddir(d);
}

long telldir(DIR *d)
{
    struct listing_dir *ld = ours(d);
    if (ld != NULL)
        return (long)ld->pos;
    REAL(long (*)(DIR *), telldir);
    return real_telldir(d);
}

void seekdir(DIR *d, long pos)
{
    struct listing_dir *ld = ours(d);
    if (ld != NULL) {
        ld->pos = pos >= 0 ? (size_t)pos : 0;
        return;
    }
    REAL(void (*)(DIR *, long), seekdir);
    real_seekdir(d, pos);
}

/* A descriptor for calls relative to the directory (openat(dirfd(d), name)):
 * the staged directory when it holds every name of the listing, else the
 * original (a partly staged directory would lack names), opened once. */
int dirfd(DIR *d)
{
    struct listing_dir *ld = ours(d);
    if (ld == NULL) {
        REAL(int (*)(DIR *), dirfd);
        return real_dirfd(d);
    }
    if (ld->fd < 0) {
        char staged[PATH_CAP];
        REAL(int (*)(const char *, int, ...), open);
        const char *whole = staged_listing(ld->path, staged);
        ld->fd = real_open(whole != NULL ? whole : ld->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    return ld->fd;
}
