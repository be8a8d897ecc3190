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
 * (NOTDIR, "file/." or "file/x": ENOTDIR, like ABSENT.) Any spelling of P
 * ("//", ".", "..", a trailing "/") is answered as the file system would, or
 * passes through (mpii_stage_image_resolve).
 * Writing (O_WRONLY, O_RDWR, O_CREAT, fopen "w"/"a"/"+") always goes to P,
 * and every call that changes a path first marks its directory live (see
 * "the live set" below): from then on, that directory and everything in it
 * passes through, in this process and the processes it starts
 * (MPIIMPORT_RUN_LIVE), so the program sees its own writes.
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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <utime.h>
#include <unistd.h>

#include "mpiimport/checksum.h"
#include "mpiimport/image.h"
#include "mpiimport/path_log.h"
#include "mpiimport/stage.h"

#define PATH_CAP 8192

static struct preload_state {
    mpii_image *index;
    char root[4096];  /* the held root (mpii_stage_hold): where staged files are read */
    char named[4096]; /* its name (MPIIMPORT_AUDIT_ROOT): the registry beside it */
    mpii_stage_hold hold;
    int gone;         /* the stage was removed or replaced: everything passes through (atomic) */
    /* (the guard against this library's own calls: t_loading, per thread) */
    mpii_path_log log; /* MPIIMPORT_RECORD_PATHS: what passed through */
    char *roots;       /* .mpiimport/roots: "d PATH\n" / "l PATH\n" for the image's tops */
    char log_busy;     /* a spin lock around log (threads) */
} g_preload;

/* Set while this library itself calls the file system (loading the index,
 * writing the log): those calls, which the core's code makes through the
 * interposed names, pass through. Per thread: another thread's calls are
 * served meanwhile. */
static __thread int t_loading __attribute__((tls_model("initial-exec")));

/* ---- the live set: directories this process (or the process that
 * started it) changed. Every answer for a live directory, and for any path
 * in or below it, is UNKNOWN: the call passes through, so the program sees
 * its own creates, writes, renames, unlinks and mkdirs at once. One
 * append-only buffer, "MPIIMPORT_RUN_LIVE=" then the directories separated
 * by ':' (the environment entry a child is given, read back by its
 * constructor); readers scan it without a lock up to the published length;
 * writers append under a spin lock. Full, or a directory with a ':' in its
 * name: everything is live ("/"). No malloc: a vfork child may get here. */

#define LIVE_VAR "MPIIMPORT_RUN_LIVE"
#define LIVE_HEAD (sizeof LIVE_VAR) /* "MPIIMPORT_RUN_LIVE=" */
#define LIVE_CAP 16384

static struct {
    char env[LIVE_CAP];
    size_t len; /* published length of env (atomic) */
    int all;    /* everything is live (atomic) */
    char busy;
    pid_t pid; /* this process (not a vfork child of it): may setenv */
} g_live = {.env = LIVE_VAR "=", .len = LIVE_HEAD};

static int live_any(void)
{
    return __atomic_load_n(&g_live.len, __ATOMIC_ACQUIRE) > LIVE_HEAD ||
           __atomic_load_n(&g_live.all, __ATOMIC_ACQUIRE);
}

/* 1 when the plain absolute path p (n bytes) is a live directory or lies
 * below one. */
static int live_covers(const char *p, size_t n)
{
    if (__atomic_load_n(&g_live.all, __ATOMIC_ACQUIRE))
        return 1;
    size_t len = __atomic_load_n(&g_live.len, __ATOMIC_ACQUIRE);
    for (size_t at = LIVE_HEAD; at < len;) {
        const char *d = g_live.env + at;
        const char *colon = memchr(d, ':', len - at);
        size_t dl = colon != NULL ? (size_t)(colon - d) : len - at;
        if (dl == 1 && d[0] == '/')
            return 1;
        if (dl <= n && memcmp(p, d, dl) == 0 && (dl == n || p[dl] == '/'))
            return 1;
        at += dl + 1;
    }
    return 0;
}

/* path (absolute) spelled plainly into out, lexically: "//" and "." go,
 * ".." removes the component before it; *dotdot: it had a "..". 0 when it
 * does not fit. */
static int lexical(const char *path, char *out, size_t cap, int *dotdot)
{
    size_t o = 1;
    *dotdot = 0;
    if (cap < 2 || path[0] != '/')
        return 0;
    out[0] = '/';
    for (const char *p = path; *p != '\0';) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            *dotdot = 1;
            while (o > 1 && out[o - 1] != '/')
                o--;
            if (o > 1)
                o--;
        } else {
            if (o + 1 + n >= cap)
                return 0;
            if (o > 1)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
    return 1;
}

/* 1 when absolute path is live (its plain spelling is). */
static int is_live(const char *path)
{
    if (!live_any() || path == NULL || path[0] != '/')
        return 0;
    char plain[PATH_CAP];
    int dotdot = 0;
    if (!lexical(path, plain, sizeof plain, &dotdot))
        return 1; /* too long to tell: pass through */
    return live_covers(plain, strlen(plain));
}

static void live_all(void) { __atomic_store_n(&g_live.all, 1, __ATOMIC_RELEASE); }

/* The environment's MPIIMPORT_RUN_LIVE made the current set (for system(),
 * popen(), posix_spawn() and execv() children, which read environ). Not in
 * a vfork child (its heap is its parent's). Called with the lock held. */
static void live_publish(void)
{
    if (g_live.pid != getpid())
        return;
    char value[LIVE_CAP];
    size_t len = __atomic_load_n(&g_live.len, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&g_live.all, __ATOMIC_ACQUIRE)) {
        memcpy(value, "/", 2);
    } else {
        memcpy(value, g_live.env + LIVE_HEAD, len - LIVE_HEAD);
        value[len - LIVE_HEAD] = '\0';
    }
    int rc = setenv(LIVE_VAR, value, 1);
    (void)rc; /* no memory: the children see less (execve still passes the set on) */
}

/* Adds the plain absolute directory dir (n bytes) to the live set. */
static void live_add(const char *dir, size_t n)
{
    if (live_covers(dir, n))
        return;
    while (__atomic_test_and_set(&g_live.busy, __ATOMIC_ACQUIRE))
        ;
    size_t len = g_live.len;
    if (!live_covers(dir, n)) {
        size_t sep = len > LIVE_HEAD;
        if (memchr(dir, ':', n) != NULL || len + sep + n >= LIVE_CAP) {
            live_all();
        } else {
            if (sep)
                g_live.env[len] = ':';
            memcpy(g_live.env + len + sep, dir, n);
            g_live.env[len + sep + n] = '\0';
            __atomic_store_n(&g_live.len, len + sep + n, __ATOMIC_RELEASE);
        }
        live_publish();
    }
    __atomic_clear(&g_live.busy, __ATOMIC_RELEASE);
}

static void live_after_fork(void) { g_live.pid = getpid(); }

/* The set this process was started with (MPIIMPORT_RUN_LIVE). */
static void live_init(void)
{
    g_live.pid = getpid();
    int rc = pthread_atfork(NULL, NULL, live_after_fork);
    (void)rc; /* without it a forked child does not setenv: its children get the set by execve */
    const char *v = getenv(LIVE_VAR);
    for (const char *p = v; p != NULL && *p != '\0';) {
        const char *colon = strchr(p, ':');
        size_t n = colon != NULL ? (size_t)(colon - p) : strlen(p);
        if (n == 1 && p[0] == '/')
            live_all();
        else if (n > 1 && p[0] == '/')
            live_add(p, n);
        p += n + (colon != NULL);
    }
}

__attribute__((constructor)) static void preload_init(void)
{
    live_init();
    struct preload_state *s = &g_preload;
    /* the program sees LD_LIBRARY_PATH as it was (`mpiimport run` pointed
     * ld.so's copy at staged directories) */
    const char *llp = getenv("MPIIMPORT_LD_LIBRARY_PATH");
    if (llp != NULL) {
        int rc = setenv("LD_LIBRARY_PATH", llp, 1);
        (void)rc; /* ld.so has read it already; only what the program sees */
    }
    t_loading = 1;
    mpii_status lst = mpii_path_log_open(&s->log, getenv("MPIIMPORT_RECORD_PATHS"), "preload");
    (void)lst; /* not recording is the answer to any failure here */
    t_loading = 0;
    const char *named = getenv("MPIIMPORT_AUDIT_ROOT");
    s->hold.fd = -1;
    if (named == NULL || named[0] != '/' || strlen(named) >= sizeof s->named)
        return;
    /* checked once, through a descriptor kept open: a directory another user
     * made under that name later is never read (mpii_stage_hold) */
    t_loading = 1;
    mpii_status hst = mpii_stage_hold_open(named, &s->hold);
    t_loading = 0;
    if (hst != MPII_OK)
        return;
    const char *root = s->hold.path;
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/.mpiimport/index", root) >= (int)sizeof path)
        return;
    uint8_t *buf = NULL;
    size_t len = 0;
    t_loading = 1;
    mpii_status st = mpii_read_file(path, O_NOFOLLOW, 1, &buf, &len);
    t_loading = 0;
    if (st != MPII_OK)
        return;
    mpii_image *img = NULL;
    if (mpii_image_parse(buf, len, &img, NULL, NULL, 0) == MPII_OK) {
        memcpy(s->root, root, strlen(root) + 1);
        memcpy(s->named, named, strlen(named) + 1);
        s->index = img;
    }
    free(buf);
    if (s->index != NULL && snprintf(path, sizeof path, "%s/.mpiimport/roots", root) < (int)sizeof path) {
        uint8_t *text = NULL;
        size_t tlen = 0;
        t_loading = 1;
        if (mpii_read_file(path, O_NOFOLLOW, 1, &text, &tlen) == MPII_OK) {
            char *r = realloc(text, tlen + 1); /* NUL-terminated, for strstr */
            if (r != NULL) {
                r[tlen] = '\0';
                s->roots = r;
            } else {
                free(text);
            }
        }
        t_loading = 0;
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
    if (mpii_stage_leave(s->named, &last) == MPII_OK && last) {
        mpii_status st = mpii_stage_discard(s->named);
        (void)st; /* at exit: nothing to report to; a later sweep retries */
    }
}

/* Whether the held stage is still the one this process checked (an fstat
 * of the held root): removed (unstaged) or replaced (staged anew), it is
 * not used again by this process, which says so once and reads the
 * originals from then on, as plainly. */
static int stage_usable(void)
{
    struct preload_state *s = &g_preload;
    if (s->index == NULL || __atomic_load_n(&s->gone, __ATOMIC_ACQUIRE))
        return 0;
    if (mpii_stage_hold_valid(&s->hold))
        return 1;
    /* (or the program closed the descriptor holding it: the same answer) */
    struct stat sb;
    int closed = fstat(s->hold.fd, &sb) != 0 || (uint64_t)sb.st_dev != s->hold.dev ||
                 (uint64_t)sb.st_ino != s->hold.ino;
    if (!__atomic_exchange_n(&s->gone, 1, __ATOMIC_ACQ_REL)) {
        char line[4400];
        int n = closed ? snprintf(line, sizeof line, "mpiimport run: process %ld closed the descriptor holding "
                                  "the stage %s; it reads the originals from now on\n", (long)getpid(), s->named)
                       : snprintf(line, sizeof line, "mpiimport run: the stage %s was removed or replaced while "
                                  "process %ld ran; it reads the originals from now on\n", s->named,
                                  (long)getpid());
        if (n > 0) {
            ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
            (void)w; /* stderr closed: nothing else to tell */
        }
    }
    return 0;
}

/* The answer for path (absolute only); staged receives the stage's path.
 * What the image cannot answer passes through, and is logged for the next
 * pack when MPIIMPORT_RECORD_PATHS asks for it. */
static mpii_stage_answer answer(const char *path, char *staged)
{
    struct preload_state *s = &g_preload;
    if (t_loading || path == NULL || path[0] != '/' || is_live(path) ||
        __atomic_load_n(&s->gone, __ATOMIC_ACQUIRE))
        return MPII_ANSWER_UNKNOWN; /* (a live path is not logged: the program's own data) */
    mpii_stage_answer a = s->index != NULL ? mpii_stage_image_resolve(s->index, s->root, path, staged, PATH_CAP)
                                           : MPII_ANSWER_UNKNOWN;
    if (a != MPII_ANSWER_UNKNOWN && !stage_usable())
        return MPII_ANSWER_UNKNOWN;
    if (a == MPII_ANSWER_UNKNOWN && s->log.fd >= 0) {
        while (__atomic_test_and_set(&s->log_busy, __ATOMIC_ACQUIRE))
            ;
        t_loading = 1; /* (the log writes; nothing it calls comes back here) */
        mpii_path_log_add(&s->log, path);
        t_loading = 0;
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
    case MPII_ANSWER_NOTDIR:
        errno = ENOTDIR;
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
        /* (staged: the staged directory, named plainly, or "") */
        REAL(int (*)(const char *, struct stat *), stat);
        struct stat sb;
        if (staged[0] == '/' && real_stat != NULL && real_stat(staged, &sb) == 0 && S_ISDIR(sb.st_mode))
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
    mpii_stage_answer a = answer(path, staged);
    if (a == MPII_ANSWER_ABSENT || a == MPII_ANSWER_NOTDIR) {
        errno = a == MPII_ANSWER_ABSENT ? ENOENT : ENOTDIR;
        return NULL;
    }
    const char *whole = staged_listing(path, staged);
    return whole != NULL ? whole : path;
}

static mode_t mode_arg(int flags, va_list ap)
{
    /* as glibc and musl read it: O_TMPFILE includes O_DIRECTORY, so a plain
     * open(dir, O_DIRECTORY) has no mode argument to read */
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

/* ---- what the program changes: every call that creates, writes,
 * truncates, renames, removes or changes the metadata of a path marks, BEFORE
 * the real call, the directory it is in live (both for rename and link), and
 * the path itself when it is or becomes a directory (mkdir, rmdir, rename,
 * symlink, chmod/chown/utime-style calls), when the image knows that
 * directory (or the path). A directory the image thinks absent (made by
 * another process) is replaced by its nearest ancestor the image lists. A
 * relative path is joined to the working directory (getcwd) or to dirfd's
 * directory (/proc/self/fd); when that fails, or a ".." follows a directory
 * that is or may be a symbolic link, everything is live from then on. No
 * call on the file system otherwise: what the image knows is in memory. ---- */

static void live_everything(void)
{
    while (__atomic_test_and_set(&g_live.busy, __ATOMIC_ACQUIRE))
        ;
    if (!__atomic_load_n(&g_live.all, __ATOMIC_ACQUIRE)) {
        live_all();
        live_publish();
    }
    __atomic_clear(&g_live.busy, __ATOMIC_RELEASE);
}

/* path (relative to dirfd) as a plain absolute path in out; 0 when that
 * cannot be told. */
static int mark_absolute(int dirfd, const char *path, char *out, size_t cap)
{
    char joined[PATH_CAP];
    size_t n = 0;
    if (path[0] != '/') {
        if (dirfd == AT_FDCWD) {
            if (getcwd(joined, sizeof joined) == NULL)
                return 0;
        } else {
            char link[64];
            REAL(ssize_t (*)(const char *, char *, size_t), readlink);
            if (real_readlink == NULL || snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd) >= (int)sizeof link)
                return 0;
            ssize_t r = real_readlink(link, joined, sizeof joined - 1);
            if (r <= 0 || joined[0] != '/')
                return 0;
            joined[r] = '\0';
        }
        n = strlen(joined);
        if (n + 1 >= sizeof joined)
            return 0;
        joined[n++] = '/';
    }
    if (snprintf(joined + n, sizeof joined - n, "%s", path) >= (int)(sizeof joined - n))
        return 0;
    int dotdot = 0;
    if (!lexical(joined, out, cap, &dotdot))
        return 0;
    char plain[PATH_CAP];
    return !dotdot || mpii_stage_image_plain(g_preload.index, joined, plain, sizeof plain) >= 0;
}

/* The length of the parent of the plain absolute path p (n bytes). */
static size_t parent_len(const char *p, size_t n)
{
    while (n > 1 && p[n - 1] != '/')
        n--;
    return n > 1 ? n - 1 : 1;
}

/* 1 when a top of the image (.mpiimport/roots) lies below p. */
static int top_below(const char *p, size_t n)
{
    const char *r = g_preload.roots;
    for (; r != NULL && *r != '\0'; r = strchr(r, '\n'), r = r != NULL ? r + 1 : NULL) {
        if (r[0] != '\0' && r[1] == ' ' && strncmp(r + 2, p, n) == 0 && (n == 1 || r[2 + n] == '/'))
            return 1;
    }
    return 0;
}

static int image_knows(const char *p)
{
    const struct preload_state *s = &g_preload;
    char staged[PATH_CAP];
    return mpii_stage_image_resolve(s->index, s->root, p, staged, sizeof staged) != MPII_ANSWER_UNKNOWN;
}

/* A directory becomes live: itself, or its nearest ancestor the image does
 * not think absent (that one's listing lacks it). */
static void mark_dir(char *dir, size_t n)
{
    const struct preload_state *s = &g_preload;
    char staged[PATH_CAP];
    while (n > 1) {
        mpii_stage_answer a = mpii_stage_image_resolve(s->index, s->root, dir, staged, sizeof staged);
        if (a != MPII_ANSWER_ABSENT && a != MPII_ANSWER_NOTDIR)
            break;
        n = parent_len(dir, n);
        dir[n] = '\0';
    }
    live_add(dir, n);
}

/* self: the path itself is, or becomes, a directory. */
static void mark(int dirfd, const char *path, int self)
{
    const struct preload_state *s = &g_preload;
    if (s->index == NULL || t_loading || path == NULL || path[0] == '\0')
        return;
    char plain[PATH_CAP], parent[PATH_CAP];
    if (!mark_absolute(dirfd, path, plain, sizeof plain)) {
        live_everything();
        return;
    }
    size_t n = strlen(plain), pn = parent_len(plain, n);
    memcpy(parent, plain, pn);
    parent[pn] = '\0';
    if (live_covers(parent, pn) && (!self || live_covers(plain, n)))
        return;
    if (!image_knows(parent) && !image_knows(plain) && !(self && top_below(plain, n)))
        return; /* nothing the image says depends on it */
    mark_dir(parent, pn);
    if (self)
        mark_dir(plain, n);
}

static int writes_mode(const char *mode)
{
    return mode != NULL && (mode[0] != 'r' || strchr(mode, '+') != NULL);
}

#define MARKS_OPEN(flags) (!reads_only(flags) || ((flags) & O_APPEND))

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
        if (MARKS_OPEN(flags))                                                 \
            mark(AT_FDCWD, path, (flags & O_DIRECTORY) != 0);                  \
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
        if (MARKS_OPEN(flags))                                                 \
            mark(dirfd, path, (flags & O_DIRECTORY) != 0);                     \
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
        if (MARKS_OPEN(flags))                                                 \
            mark(AT_FDCWD, path, (flags & O_DIRECTORY) != 0);                  \
        const char *p = (flags & O_DIRECTORY) ? directory(path, staged, flags) \
                        : route(path, staged, reads_only(flags));           \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(p, flags);                                          \
    }
DEFINE_OPEN_2(__open_2)
DEFINE_OPEN_2(__open64_2)

/* _FORTIFY_SOURCE builds call these for an openat() without a mode */
#define DEFINE_OPENAT_2(name)                                                  \
    int name(int dirfd, const char *path, int flags)                           \
    {                                                                          \
        REAL(int (*)(int, const char *, int), name);                           \
        char staged[PATH_CAP];                                                 \
        if (MARKS_OPEN(flags))                                                 \
            mark(dirfd, path, (flags & O_DIRECTORY) != 0);                     \
        const char *p = path;                                                  \
        if (is_absolute(path))                                                 \
            p = (flags & O_DIRECTORY) ? directory(path, staged, flags)         \
                                      : route(path, staged, reads_only(flags)); \
        if (p == NULL)                                                         \
            return -1;                                                         \
        return real_##name(dirfd, p, flags);                                   \
    }
DEFINE_OPENAT_2(__openat_2)
DEFINE_OPENAT_2(__openat64_2)

#define DEFINE_FOPEN(name)                                                     \
    FILE *name(const char *path, const char *mode)                             \
    {                                                                          \
        REAL(FILE * (*)(const char *, const char *), name);                    \
        char staged[PATH_CAP];                                                 \
        int ro = mode != NULL && mode[0] == 'r' && strchr(mode, '+') == NULL;  \
        if (writes_mode(mode))                                                 \
            mark(AT_FDCWD, path, 0);                                           \
        const char *p = route(path, staged, ro);                            \
        if (p == NULL)                                                         \
            return NULL;                                                       \
        return real_##name(p, mode);                                           \
    }
DEFINE_FOPEN(fopen)
DEFINE_FOPEN(fopen64)

#define DEFINE_FREOPEN(name)                                                   \
    FILE *name(const char *path, const char *mode, FILE *stream)               \
    {                                                                          \
        REAL(FILE * (*)(const char *, const char *, FILE *), name);            \
        if (writes_mode(mode)) /* (path NULL: the same file; mark passes it by) */ \
            mark(AT_FDCWD, path, 0);                                           \
        return real_##name(path, mode, stream);                                \
    }
DEFINE_FREOPEN(freopen)
DEFINE_FREOPEN(freopen64)

#define DEFINE_CREAT(name)                                                     \
    int name(const char *path, mode_t mode)                                    \
    {                                                                          \
        REAL(int (*)(const char *, mode_t), name);                             \
        mark(AT_FDCWD, path, 0);                                               \
        return real_##name(path, mode);                                        \
    }
DEFINE_CREAT(creat)
DEFINE_CREAT(creat64)

#define DEFINE_TRUNCATE(name)                                                  \
    int name(const char *path, off_t length)                                   \
    {                                                                          \
        REAL(int (*)(const char *, off_t), name);                              \
        mark(AT_FDCWD, path, 0);                                               \
        return real_##name(path, length);                                      \
    }
DEFINE_TRUNCATE(truncate)
DEFINE_TRUNCATE(truncate64)

/* ---- the other calls that change what a path shows ---- */

int rename(const char *from, const char *to)
{
    REAL(int (*)(const char *, const char *), rename);
    mark(AT_FDCWD, from, 1);
    mark(AT_FDCWD, to, 1);
    return real_rename(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    REAL(int (*)(int, const char *, int, const char *), renameat);
    mark(fromfd, from, 1);
    mark(tofd, to, 1);
    return real_renameat(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
    REAL(int (*)(int, const char *, int, const char *, unsigned int), renameat2);
    mark(fromfd, from, 1);
    mark(tofd, to, 1);
    return real_renameat2(fromfd, from, tofd, to, flags);
}

int unlink(const char *path)
{
    REAL(int (*)(const char *), unlink);
    mark(AT_FDCWD, path, 0);
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    REAL(int (*)(int, const char *, int), unlinkat);
    mark(dirfd, path, (flags & AT_REMOVEDIR) != 0);
    return real_unlinkat(dirfd, path, flags);
}

int mkdir(const char *path, mode_t mode)
{
    REAL(int (*)(const char *, mode_t), mkdir);
    mark(AT_FDCWD, path, 1);
    return real_mkdir(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    REAL(int (*)(int, const char *, mode_t), mkdirat);
    mark(dirfd, path, 1);
    return real_mkdirat(dirfd, path, mode);
}

int rmdir(const char *path)
{
    REAL(int (*)(const char *), rmdir);
    mark(AT_FDCWD, path, 1);
    return real_rmdir(path);
}

int link(const char *from, const char *to)
{
    REAL(int (*)(const char *, const char *), link);
    mark(AT_FDCWD, from, 0); /* (its link count changes) */
    mark(AT_FDCWD, to, 0);
    return real_link(from, to);
}

int linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
    REAL(int (*)(int, const char *, int, const char *, int), linkat);
    mark(fromfd, from, 0); /* ("" with AT_EMPTY_PATH: nothing) */
    mark(tofd, to, 0);
    return real_linkat(fromfd, from, tofd, to, flags);
}

int symlink(const char *target, const char *path)
{
    REAL(int (*)(const char *, const char *), symlink);
    mark(AT_FDCWD, path, 1);
    return real_symlink(target, path);
}

int symlinkat(const char *target, int dirfd, const char *path)
{
    REAL(int (*)(const char *, int, const char *), symlinkat);
    mark(dirfd, path, 1);
    return real_symlinkat(target, dirfd, path);
}

int mknod(const char *path, mode_t mode, dev_t dev)
{
    REAL(int (*)(const char *, mode_t, dev_t), mknod);
    mark(AT_FDCWD, path, 0);
    return real_mknod(path, mode, dev);
}

int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    REAL(int (*)(int, const char *, mode_t, dev_t), mknodat);
    mark(dirfd, path, 0);
    return real_mknodat(dirfd, path, mode, dev);
}

int mkfifo(const char *path, mode_t mode)
{
    REAL(int (*)(const char *, mode_t), mkfifo);
    mark(AT_FDCWD, path, 0);
    return real_mkfifo(path, mode);
}

int mkfifoat(int dirfd, const char *path, mode_t mode)
{
    REAL(int (*)(int, const char *, mode_t), mkfifoat);
    mark(dirfd, path, 0);
    return real_mkfifoat(dirfd, path, mode);
}

/* metadata: a stat() of the path (or, for a directory, of itself) answered
 * from the stage would show the old mode, owner or times */
int chmod(const char *path, mode_t mode)
{
    REAL(int (*)(const char *, mode_t), chmod);
    mark(AT_FDCWD, path, 1);
    return real_chmod(path, mode);
}

int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    REAL(int (*)(int, const char *, mode_t, int), fchmodat);
    mark(dirfd, path, 1);
    return real_fchmodat(dirfd, path, mode, flags);
}

int chown(const char *path, uid_t uid, gid_t gid)
{
    REAL(int (*)(const char *, uid_t, gid_t), chown);
    mark(AT_FDCWD, path, 1);
    return real_chown(path, uid, gid);
}

int lchown(const char *path, uid_t uid, gid_t gid)
{
    REAL(int (*)(const char *, uid_t, gid_t), lchown);
    mark(AT_FDCWD, path, 1);
    return real_lchown(path, uid, gid);
}

int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
    REAL(int (*)(int, const char *, uid_t, gid_t, int), fchownat);
    mark(dirfd, path, 1);
    return real_fchownat(dirfd, path, uid, gid, flags);
}

int utime(const char *path, const struct utimbuf *times)
{
    REAL(int (*)(const char *, const struct utimbuf *), utime);
    mark(AT_FDCWD, path, 1);
    return real_utime(path, times);
}

int utimes(const char *path, const struct timeval times[2])
{
    REAL(int (*)(const char *, const struct timeval[2]), utimes);
    mark(AT_FDCWD, path, 1);
    return real_utimes(path, times);
}

int lutimes(const char *path, const struct timeval times[2])
{
    REAL(int (*)(const char *, const struct timeval[2]), lutimes);
    mark(AT_FDCWD, path, 1);
    return real_lutimes(path, times);
}

int futimesat(int dirfd, const char *path, const struct timeval times[2])
{
    REAL(int (*)(int, const char *, const struct timeval[2]), futimesat);
    mark(dirfd, path, 1); /* (NULL: dirfd's own file; mark passes it by) */
    return real_futimesat(dirfd, path, times);
}

int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags)
{
    REAL(int (*)(int, const char *, const struct timespec[2], int), utimensat);
    mark(dirfd, path, 1); /* (NULL: dirfd's own file, glibc's futimens; mark passes it by) */
    return real_utimensat(dirfd, path, times, flags);
}

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
    if (is_live(path))
        return -1;
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
    if (a == MPII_ANSWER_ABSENT || a == MPII_ANSWER_NOTDIR) {
        errno = a == MPII_ANSWER_ABSENT ? ENOENT : ENOTDIR;
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
    if (a == MPII_ANSWER_ABSENT || a == MPII_ANSWER_NOTDIR) {
        errno = a == MPII_ANSWER_ABSENT ? ENOENT : ENOTDIR;
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
    if (s->index == NULL || t_loading || n >= PATH_MAX || !plain_absolute(path, n))
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

/* The held root for an exec, in root (*fd: a descriptor opened here, to
 * close if the exec fails; -1 when none). A child that closed its
 * descriptors before exec (Python's subprocess does, in a vfork child)
 * holds the same directory anew by name: the same device and inode as the
 * one checked, still this user's and not being removed. 0: no stage to
 * exec from. Writes nothing shared (a vfork child runs on its parent's
 * memory) and calls no malloc. */
static int exec_root(char *root, size_t cap, int *fd)
{
    const struct preload_state *s = &g_preload;
    struct stat sb;
    *fd = -1;
    if (s->index == NULL || __atomic_load_n(&s->gone, __ATOMIC_ACQUIRE))
        return 0;
    if (mpii_stage_hold_valid(&s->hold))
        return snprintf(root, cap, "%s", s->root) < (int)cap;
    int again = open(s->named, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (again < 0)
        return 0;
    if (fstat(again, &sb) != 0 || (uint64_t)sb.st_dev != s->hold.dev || (uint64_t)sb.st_ino != s->hold.ino ||
        sb.st_uid != geteuid() || sb.st_nlink == 0 || (sb.st_mode & S_ISVTX) != 0 ||
        snprintf(root, cap, "/proc/self/fd/%d", again) >= (int)cap) {
        int ok = close(again) == 0;
        (void)ok;
        return 0;
    }
    *fd = again;
    return 1;
}

static int staged_elf(const char *path, char *staged, int *fd)
{
    const struct preload_state *s = &g_preload;
    char root[64];
    *fd = -1;
    if (s->index == NULL || t_loading || is_live(path) || !exec_root(root, sizeof root, fd))
        return 0;
    if (mpii_stage_image_program(s->index, root, path, staged, PATH_CAP))
        return 1;
    if (*fd >= 0) {
        int ok = close(*fd) == 0;
        (void)ok;
        *fd = -1;
    }
    return 0;
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

/* The live set goes with every exec, whatever environment the caller built
 * (Python's subprocess with env=dict(os.environ, ...) builds it from a copy
 * taken before this process changed anything): envp without its
 * MPIIMPORT_RUN_LIVE entry, and this process's set appended, in out (cap
 * pointers) with the entry's text in entry (LIVE_CAP bytes). NULL: envp as
 * it is (nothing live, or too many variables). No malloc (vfork). */
static char *const *with_live_set(char *const envp[], char **out, size_t cap, char *entry)
{
    if (!live_any() || envp == NULL)
        return envp;
    size_t len = __atomic_load_n(&g_live.len, __ATOMIC_ACQUIRE), n = 0;
    if (__atomic_load_n(&g_live.all, __ATOMIC_ACQUIRE)) {
        memcpy(entry, LIVE_VAR "=/", LIVE_HEAD + 2);
    } else {
        memcpy(entry, g_live.env, len);
        entry[len] = '\0';
    }
    for (size_t i = 0; envp[i] != NULL; i++) {
        if (strncmp(envp[i], LIVE_VAR "=", LIVE_HEAD) == 0)
            continue;
        if (n + 2 > cap)
            return envp;
        out[n++] = envp[i];
    }
    out[n++] = entry;
    out[n] = NULL;
    return out;
}

#define EXEC_ENV_CAP 1024

int execve(const char *path, char *const argv[], char *const envp[])
{
    REAL(int (*)(const char *, char *const[], char *const[]), execve);
    char staged[PATH_CAP], entry[LIVE_CAP];
    char *withlive[EXEC_ENV_CAP];
    char **env = staged_library_path(envp);
    char *const *use = with_live_set(env != NULL ? env : envp, withlive, EXEC_ENV_CAP, entry);
    int held = -1;
    int rc = real_execve(staged_elf(path, staged, &held) ? staged : path, argv, use);
    if (held >= 0) { /* exec failed: this process goes on */
        int saved = errno, ok = close(held) == 0;
        (void)ok;
        errno = saved;
    }
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
    mpii_stage_answer a = answer(path, staged);
    if (a == MPII_ANSWER_ABSENT || a == MPII_ANSWER_NOTDIR) {
        errno = a == MPII_ANSWER_ABSENT ? ENOENT : ENOTDIR;
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
