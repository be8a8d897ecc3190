/* stage_registry.c — who still uses a node's stage directory.
 *
 * Beside each stage root, "<root>.live/" holds one empty file per process of
 * the job on this node, named by its pid (0700 directory, 0600 files, owned
 * by us, no symlink followed). With it:
 *   - a rank whose node barrier failed at the end (a peer died) leaves, and
 *     the last live process of the node removes the stage;
 *   - a rank killed by SIGTERM leaves the same way before it dies;
 *   - at start-up, one rank per node sweeps what killed jobs left: this
 *     user's stage roots whose registry names no live process, and this
 *     user's transport files "/dev/shm/mpiimport-<pid>-<rank>-<hex>" whose
 *     process is gone. Another user's files are never touched; a root with
 *     no registry (liveness unknown) is left alone. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/stage.h"

#define LIVE_SUFFIX ".live"
#define SWEEP_GRACE_S 60
#define PART_INFIX ".part-" /* stage_image.c: a staged image being written */
#define END_SUFFIX ".end"   /* "<pid>.end": that process waits at the end of its session */

static int pid_alive(long pid)
{
    if (pid <= 0)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* A decimal pid, the whole string; -1 otherwise. */
static long parse_pid(const char *s, const char **end)
{
    long v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        if (v > 100000000L)
            return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (end != NULL)
        *end = p;
    else if (*p != '\0')
        return -1;
    return v;
}

static mpii_status live_dir_of(const char *root, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", root, LIVE_SUFFIX);
    return (n < 0 || (size_t)n >= cap) ? MPII_ERR_TOOLONG : MPII_OK;
}

/* Ours: a directory (or regular file) owned by this user, private to it. */
static int is_ours(const struct stat *sb, int want_dir)
{
    if (sb->st_uid != geteuid())
        return 0;
    if (want_dir)
        return S_ISDIR(sb->st_mode) && (sb->st_mode & 077) == 0;
    return S_ISREG(sb->st_mode);
}

mpii_status mpii_stage_register(const char *root)
{
    if (root == NULL || root[0] != '/')
        return MPII_ERR_INVALID;
    char live[4096], me[4200];
    mpii_status st = live_dir_of(root, live, sizeof live);
    if (st != MPII_OK)
        return st;
    if (mkdir(live, 0700) != 0 && errno != EEXIST)
        return errno == ENOSPC ? MPII_ERR_NOSPACE : MPII_ERR_IO;
    struct stat sb;
    if (lstat(live, &sb) != 0)
        return MPII_ERR_IO;
    if (!is_ours(&sb, 1))
        return MPII_ERR_UNSAFE;
    int n = snprintf(me, sizeof me, "%s/%ld", live, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof me)
        return MPII_ERR_TOOLONG;
    int fd = open(me, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOSPC ? MPII_ERR_NOSPACE : MPII_ERR_IO;
    return close(fd) == 0 ? MPII_OK : MPII_ERR_IO;
}

int mpii_stage_has_registry(const char *root)
{
    char live[4096];
    struct stat sb;
    return root != NULL && live_dir_of(root, live, sizeof live) == MPII_OK && lstat(live, &sb) == 0 &&
           is_ours(&sb, 1);
}

/* Live processes named in a registry (other than the caller, unless
 * count_self); -1 when it cannot be read. */
static int count_live(const char *live, int count_self)
{
    DIR *d = opendir(live);
    if (d == NULL)
        return -1;
    int alive = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        long pid = parse_pid(ent->d_name, NULL);
        if (pid < 0 || (!count_self && pid == (long)getpid()))
            continue;
        if (pid_alive(pid))
            alive++;
    }
    if (closedir(d) != 0)
        return -1;
    return alive;
}

mpii_status mpii_stage_discard(const char *root)
{
    if (root == NULL || root[0] != '/')
        return MPII_ERR_INVALID;
    mpii_status result = MPII_OK;
    struct stat sb;
    if (lstat(root, &sb) == 0) {
        mpii_stage *stage = NULL;
        mpii_status st = mpii_stage_open(root, &stage);
        if (st == MPII_OK) {
            st = mpii_stage_remove(stage);
            mpii_stage_close(stage);
        }
        result = st;
    }
    char live[4096];
    mpii_status st = live_dir_of(root, live, sizeof live);
    if (st != MPII_OK)
        return st;
    if (lstat(live, &sb) != 0)
        return result;
    if (!is_ours(&sb, 1))
        return MPII_ERR_UNSAFE;
    DIR *d = opendir(live);
    if (d == NULL)
        return MPII_ERR_IO;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        const char *end = NULL;
        if (parse_pid(ent->d_name, &end) < 0 || (*end != '\0' && strcmp(end, END_SUFFIX) != 0))
            continue;
        if (unlinkat(dirfd(d), ent->d_name, 0) != 0 && errno != ENOENT && result == MPII_OK)
            result = MPII_ERR_IO;
    }
    if (closedir(d) != 0 && result == MPII_OK)
        result = MPII_ERR_IO;
    if (rmdir(live) != 0 && errno != ENOENT && result == MPII_OK)
        result = MPII_ERR_IO;
    return result;
}

mpii_status mpii_stage_leave(const char *root, int *last)
{
    if (root == NULL || root[0] != '/' || last == NULL)
        return MPII_ERR_INVALID;
    *last = 0;
    char live[4096], me[4200];
    mpii_status st = live_dir_of(root, live, sizeof live);
    if (st != MPII_OK)
        return st;
    int n = snprintf(me, sizeof me, "%s/%ld", live, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof me)
        return MPII_ERR_TOOLONG;
    if (unlink(me) != 0 && errno != ENOENT)
        return MPII_ERR_IO;
    if (snprintf(me, sizeof me, "%s/%ld" END_SUFFIX, live, (long)getpid()) < (int)sizeof me &&
        unlink(me) != 0 && errno != ENOENT)
        return MPII_ERR_IO;
    /* A registry that cannot be read (gone: swept while it was being made)
     * tells nothing: not the last, the stage is left to a later sweep. */
    int alive = count_live(live, 0);
    *last = alive == 0;
    return MPII_OK;
}

mpii_status mpii_stage_at_end(const char *root)
{
    char live[4096], me[4200];
    mpii_status st = live_dir_of(root, live, sizeof live);
    if (st != MPII_OK)
        return st;
    int n = snprintf(me, sizeof me, "%s/%ld" END_SUFFIX, live, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof me)
        return MPII_ERR_TOOLONG;
    int fd = open(me, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOSPC ? MPII_ERR_NOSPACE : MPII_ERR_IO;
    return close(fd) == 0 ? MPII_OK : MPII_ERR_IO;
}

int mpii_stage_all_at_end(const char *root)
{
    char live[4096];
    if (root == NULL || live_dir_of(root, live, sizeof live) != MPII_OK)
        return 0;
    int dfd = open(live, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int ok = close(dfd) == 0;
        (void)ok;
        return 0;
    }
    int all = 1, seen = 0;
    struct dirent *ent;
    while (all && (ent = readdir(d)) != NULL) {
        long pid = parse_pid(ent->d_name, NULL);
        if (pid < 0 || pid == (long)getpid() || !pid_alive(pid))
            continue;
        char end[64];
        seen++;
        all = snprintf(end, sizeof end, "%ld" END_SUFFIX, pid) < (int)sizeof end &&
              faccessat(dirfd(d), end, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    }
    if (closedir(d) != 0)
        return 0;
    return all && seen > 0;
}

/* "mpiimport-<pid>-<rank>-<16 hex>": a transport's per-process file. */
static long transport_file_pid(const char *name)
{
    const char *p = name + strlen("mpiimport-"), *end = NULL;
    long pid = parse_pid(p, &end);
    if (pid < 0 || *end != '-')
        return -1;
    p = end + 1;
    if (parse_pid(p, &end) < 0 || *end != '-')
        return -1;
    p = end + 1;
    size_t hex = 0;
    while (isxdigit((unsigned char)p[hex]))
        hex++;
    return (hex == 16 && p[hex] == '\0') ? pid : -1;
}

size_t mpii_stage_sweep(const char *stage_dir, const char *shm_dir)
{
    size_t removed = 0;
    const char *dirs[2] = {stage_dir, shm_dir};
    for (int k = 0; k < 2; k++) {
        if (dirs[k] == NULL)
            continue;
        DIR *d = opendir(dirs[k]);
        if (d == NULL)
            continue;
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
            const char *name = ent->d_name;
            if (strncmp(name, "mpiimport-", strlen("mpiimport-")) != 0)
                continue;
            struct stat sb;
            if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || sb.st_uid != geteuid())
                continue;
            char path[4096];
            int n = snprintf(path, sizeof path, "%s/%s", dirs[k], name);
            if (n < 0 || (size_t)n >= sizeof path)
                continue;
            size_t len = strlen(name);
            const char *part = strstr(name, PART_INFIX);
            if (k == 0 && S_ISDIR(sb.st_mode) && part != NULL && (sb.st_mode & 077) == 0) {
                /* a staged image being written by a stager that was killed:
                 * "<root>.part-<pid>" whose pid is gone (and old enough that
                 * the pid was not just handed to another stager) */
                long pid = parse_pid(part + strlen(PART_INFIX), NULL);
                mpii_stage *stage = NULL;
                if (pid > 0 && !pid_alive(pid) && time(NULL) - sb.st_mtime >= SWEEP_GRACE_S &&
                    mpii_stage_open(path, &stage) == MPII_OK) {
                    if (mpii_stage_remove(stage) == MPII_OK)
                        removed++;
                    mpii_stage_close(stage);
                }
                continue;
            }
            if (k == 0 && S_ISDIR(sb.st_mode) && len > strlen(LIVE_SUFFIX) &&
                strcmp(name + len - strlen(LIVE_SUFFIX), LIVE_SUFFIX) == 0) {
                /* A registry changed in the last SWEEP_GRACE_S is a job's
                 * being made (made, its first process not yet listed): only
                 * an older one with no live process is a leftover. */
                if (time(NULL) - sb.st_mtime < SWEEP_GRACE_S || count_live(path, 1) != 0)
                    continue; /* in use, or unreadable: not ours to judge */
                path[n - (int)strlen(LIVE_SUFFIX)] = '\0';
                if (mpii_stage_discard(path) == MPII_OK)
                    removed++;
            } else if (k == 1 && S_ISREG(sb.st_mode)) {
                long pid = transport_file_pid(name);
                if (pid > 0 && !pid_alive(pid) && unlinkat(dirfd(d), name, 0) == 0)
                    removed++;
            }
        }
        if (closedir(d) != 0)
            continue;
    }
    return removed;
}
