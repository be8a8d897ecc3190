/* stage.c — the node-local stage: private copies of extension modules.
 *
 * dlopen() needs a real file, so the bytes of an extension module received
 * from rank 0 are written under a private root directory (mode 0700, owned by
 * the effective user, never a symlink) at <root>/<original absolute path>.
 * Keeping the original layout makes $ORIGIN-relative RPATHs of bundled
 * libraries resolve inside the staged tree.
 *
 * Every path below the root is walked one component at a time with
 * openat()/mkdirat() and O_NOFOLLOW, so a symlink planted anywhere in the
 * stage is refused (MPII_ERR_UNSAFE) rather than followed, and nothing is
 * ever written outside the root.
 *
 * One writer per node: the process that creates "<name>.part" with O_EXCL
 * writes it and renames it to "<name>"; the others poll for "<name>" (bounded
 * by a timeout) or for "<name>.failed", which a writer leaves behind when the
 * file system is full, so that nobody waits for a file that will never come.
 *
 * Library code: never prints, every call's result is checked, no globals. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/stage.h"
#include "mpiimport/util.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif
#ifndef NAME_MAX
#define NAME_MAX 255
#endif

struct mpii_stage {
    int root_fd;  /* O_DIRECTORY|O_NOFOLLOW descriptor of the root */
    char *root;   /* the root path as given, without trailing slashes */
};

/* Room for a component plus the ".failed" / ".part" suffix and the NUL. */
#define NAME_BUF (NAME_MAX + 16)

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

/* ---- helpers ------------------------------------------------------------ */

/* Maps the errno of a failed file-system call to a status. */
static mpii_status status_from_errno(int err)
{
    switch (err) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return MPII_ERR_NOSPACE;
    case ENAMETOOLONG:
        return MPII_ERR_TOOLONG;
    case ENOMEM:
        return MPII_ERR_NOMEM;
    case ELOOP:
        return MPII_ERR_UNSAFE; /* only ever seen with O_NOFOLLOW: a symlink */
    default:
        return MPII_ERR_IO;
    }
}

static int is_nospace(int err)
{
#ifdef EDQUOT
    if (err == EDQUOT)
        return 1;
#endif
    return err == ENOSPC;
}

static void close_keep_errno(int fd)
{
    int saved = errno;
    (void)close(fd);
    errno = saved;
}

static void sleep_1ms(void)
{
    struct timespec ts = {0, 1000000L};
    (void)nanosleep(&ts, NULL); /* an early wake-up (EINTR) just polls sooner */
}

/* Checks that original is "/a/b/c": absolute, no empty, "." or ".."
 * component, no component longer than NAME_MAX. */
static mpii_status check_original(const char *original)
{
    if (original == NULL || original[0] != '/')
        return MPII_ERR_INVALID;
    size_t total = strnlen(original, PATH_MAX);
    if (total >= PATH_MAX)
        return MPII_ERR_TOOLONG;
    const char *p = original + 1;
    if (*p == '\0')
        return MPII_ERR_INVALID; /* "/" names no file */
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (n == 0)
            return MPII_ERR_INVALID; /* "//" or a trailing "/" */
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return MPII_ERR_INVALID;
        if (n > NAME_MAX)
            return MPII_ERR_TOOLONG;
        if (slash == NULL)
            return MPII_OK;
        p = slash + 1;
    }
}

/* Copies the n bytes at src into a NAME_BUF buffer, followed by suffix. */
static mpii_status make_name(char *dst, const char *src, size_t n, const char *suffix)
{
    int w = snprintf(dst, NAME_BUF, "%.*s%s", (int)n, src, suffix);
    if (w < 0)
        return MPII_ERR_INVALID;
    if ((size_t)w >= NAME_BUF)
        return MPII_ERR_TOOLONG;
    return MPII_OK;
}

/* Opens (creating with mode 0700 when missing) the directory name inside
 * dirfd, never following a symlink; the result must be owned by us. */
static mpii_status open_subdir(int dirfd, const char *name, int *out)
{
    int created = 0;
    if (mkdirat(dirfd, name, 0700) == 0)
        created = 1;
    else if (errno != EEXIST)
        return status_from_errno(errno);

    int fd = openat(dirfd, name, DIR_FLAGS);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR)
            return MPII_ERR_UNSAFE; /* a symlink or a non-directory */
        return status_from_errno(errno);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        mpii_status s = status_from_errno(errno);
        close_keep_errno(fd);
        return s;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        (void)close(fd);
        return MPII_ERR_UNSAFE;
    }
    /* The umask may have taken bits away; directories we create are 0700. */
    if (created && (st.st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0) {
        mpii_status s = status_from_errno(errno);
        close_keep_errno(fd);
        return s;
    }
    *out = fd;
    return MPII_OK;
}

/* Is name in dirfd a finished staged file of len bytes?
 * MPII_OK: yes. MPII_ERR_NOTFOUND: absent. Otherwise an error. */
static mpii_status check_final(int dirfd, const char *name, size_t len)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT)
            return MPII_ERR_NOTFOUND;
        return status_from_errno(errno);
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return MPII_ERR_UNSAFE;
    if (st.st_size < 0 || (unsigned long long)st.st_size != (unsigned long long)len)
        return MPII_ERR_CORRUPT; /* a stale file of another size */
    return MPII_OK;
}

/* Does name exist in dirfd (as anything, symlinks not followed)?
 * 1: yes, 0: no, -1: the check itself failed (errno set). */
static int exists_at(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return errno == ENOENT ? 0 : -1;
}

static int write_all(int fd, const unsigned char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done;
        if (chunk > (size_t)1 << 30)
            chunk = (size_t)1 << 30;
        ssize_t w = write(fd, data + done, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* The file system is full: drop the partial file and leave "<name>.failed"
 * so that the other processes on the node give up at once. */
static mpii_status give_up_nospace(int dirfd, const char *part, const char *failed)
{
    (void)unlinkat(dirfd, part, 0);
    int fd = openat(dirfd, failed, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0)
        (void)close(fd);
    /* Not being able to leave the marker only makes the others wait. */
    errno = ENOSPC;
    return MPII_ERR_NOSPACE;
}

/* We own "<name>.part" (fd): write it and rename it into place. */
static mpii_status write_and_publish(int dirfd, int fd, const char *name, const char *part,
                                     const char *failed, const void *data, size_t len)
{
    int failed_errno = 0;
    if (fchmod(fd, 0700) != 0 || write_all(fd, data, len) != 0)
        failed_errno = errno;
    if (close(fd) != 0 && failed_errno == 0 && errno != EINTR)
        failed_errno = errno;
    if (failed_errno != 0) {
        if (is_nospace(failed_errno))
            return give_up_nospace(dirfd, part, failed);
        (void)unlinkat(dirfd, part, 0);
        errno = failed_errno;
        return status_from_errno(failed_errno);
    }
    if (renameat(dirfd, part, dirfd, name) != 0) {
        int err = errno;
        (void)unlinkat(dirfd, part, 0);
        errno = err;
        return status_from_errno(err);
    }
    return MPII_OK;
}

/* Waits for another writer: "<name>" appears (OK), "<name>.failed" appears
 * (NOSPACE) or timeout_s passes (TIMEOUT). */
static mpii_status wait_for_writer(int dirfd, const char *name, const char *failed, size_t len,
                                   double timeout_s)
{
    double deadline = mpii_monotonic_s() + timeout_s;
    for (;;) {
        mpii_status s = check_final(dirfd, name, len);
        if (s != MPII_ERR_NOTFOUND)
            return s;
        int f = exists_at(dirfd, failed);
        if (f < 0)
            return status_from_errno(errno);
        if (f > 0)
            return MPII_ERR_NOSPACE;
        if (mpii_monotonic_s() >= deadline)
            return MPII_ERR_TIMEOUT;
        sleep_1ms();
    }
}

/* Stages the file name inside dirfd. */
/* The node's shared memory is the job's too: MPI's shared-memory transport
 * maps its segments there, and a full /dev/shm kills a job with SIGBUS
 * (measured: a 4-rank Open MPI job whose stage filled it). So a file is
 * staged only while the file system keeps STAGE_RESERVE_MIN bytes, or
 * STAGE_RESERVE_PERCENT of its size if that is more, free after it. */
#define STAGE_RESERVE_MIN (64ull << 20)
#define STAGE_RESERVE_PERCENT 5ull

static int leaves_room(int fd, size_t len)
{
    struct statvfs vs;
    if (fstatvfs(fd, &vs) != 0 || vs.f_blocks == 0)
        return 1; /* cannot tell (or not a sized file system): the write itself says */
    unsigned long long unit = vs.f_frsize ? vs.f_frsize : vs.f_bsize;
    unsigned long long total = (unsigned long long)vs.f_blocks * unit;
    unsigned long long avail = (unsigned long long)vs.f_bavail * unit;
    unsigned long long reserve = total / 100ull * STAGE_RESERVE_PERCENT;
    if (reserve < STAGE_RESERVE_MIN)
        reserve = STAGE_RESERVE_MIN;
    return avail > reserve && avail - reserve > (unsigned long long)len;
}

static mpii_status stage_in_dir(int dirfd, const char *name, size_t name_len, const void *data,
                                size_t len, double timeout_s)
{
    char final_name[NAME_BUF], part[NAME_BUF], failed[NAME_BUF];
    mpii_status s = make_name(final_name, name, name_len, "");
    if (s == MPII_OK)
        s = make_name(part, name, name_len, ".part");
    if (s == MPII_OK)
        s = make_name(failed, name, name_len, ".failed");
    if (s != MPII_OK)
        return s;

    s = check_final(dirfd, final_name, len);
    if (s != MPII_ERR_NOTFOUND)
        return s; /* already staged (OK) or unusable */
    int f = exists_at(dirfd, failed);
    if (f < 0)
        return status_from_errno(errno);
    if (f > 0)
        return MPII_ERR_NOSPACE;

    int fd = openat(dirfd, part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
    if (fd < 0) {
        if (errno == EEXIST)
            return wait_for_writer(dirfd, final_name, failed, len, timeout_s);
        if (is_nospace(errno))
            return give_up_nospace(dirfd, part, failed);
        return status_from_errno(errno);
    }
    /* Someone may have finished between our check and our O_EXCL. */
    s = check_final(dirfd, final_name, len);
    if (s != MPII_ERR_NOTFOUND) {
        (void)close(fd);
        (void)unlinkat(dirfd, part, 0);
        return s;
    }
    if (!leaves_room(dirfd, len)) { /* as a write that found the file system full */
        (void)close(fd);
        return give_up_nospace(dirfd, part, failed);
    }
    return write_and_publish(dirfd, fd, final_name, part, failed, data, len);
}

/* Empties the directory dirfd (not closed here); never follows a symlink. */
static mpii_status remove_contents(int dirfd)
{
    int fd = openat(dirfd, ".", DIR_FLAGS);
    if (fd < 0)
        return status_from_errno(errno);
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        mpii_status s = status_from_errno(errno);
        close_keep_errno(fd);
        return s;
    }
    mpii_status result = MPII_OK;
    /* Repeat passes until a pass sees nothing: removing entries while reading
     * a directory may make readdir skip some. */
    for (;;) {
        size_t seen = 0, removed = 0;
        rewinddir(dir);
        for (;;) {
            errno = 0;
            struct dirent *e = readdir(dir);
            if (e == NULL) {
                if (errno != 0 && result == MPII_OK)
                    result = status_from_errno(errno);
                break;
            }
            const char *n = e->d_name;
            if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
                continue;
            seen++;
            struct stat st;
            if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT)
                    removed++;
                else if (result == MPII_OK)
                    result = status_from_errno(errno);
                continue;
            }
            if (S_ISDIR(st.st_mode)) {
                int sub = openat(fd, n, DIR_FLAGS);
                if (sub >= 0) {
                    mpii_status s = remove_contents(sub);
                    (void)close(sub);
                    if (s != MPII_OK && result == MPII_OK)
                        result = s;
                    if (unlinkat(fd, n, AT_REMOVEDIR) == 0 || errno == ENOENT)
                        removed++;
                    else if (result == MPII_OK)
                        result = status_from_errno(errno);
                    continue;
                }
                if (errno != ELOOP && errno != ENOTDIR) {
                    if (result == MPII_OK)
                        result = status_from_errno(errno);
                    continue;
                }
                /* Replaced by a symlink or file meanwhile: unlink it below. */
            }
            if (unlinkat(fd, n, 0) == 0 || errno == ENOENT)
                removed++;
            else if (result == MPII_OK)
                result = status_from_errno(errno);
        }
        if (seen == 0 || result != MPII_OK)
            break;
        if (removed == 0) {
            result = MPII_ERR_IO; /* entries that cannot be removed */
            break;
        }
    }
    (void)closedir(dir); /* closes fd */
    return result;
}

/* ---- public ------------------------------------------------------------- */

mpii_status mpii_stage_open(const char *root, mpii_stage **out)
{
    if (out == NULL)
        return MPII_ERR_INVALID;
    *out = NULL;
    if (root == NULL || root[0] == '\0')
        return MPII_ERR_INVALID;
    size_t n = strnlen(root, PATH_MAX);
    if (n >= PATH_MAX)
        return MPII_ERR_TOOLONG;
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return MPII_ERR_INVALID; /* never stage into (or remove) "/" */

    mpii_stage *stage = malloc(sizeof *stage);
    if (stage == NULL)
        return MPII_ERR_NOMEM;
    stage->root = malloc(n + 1);
    if (stage->root == NULL) {
        free(stage);
        return MPII_ERR_NOMEM;
    }
    memcpy(stage->root, root, n);
    stage->root[n] = '\0';
    stage->root_fd = -1;

    mpii_status s = MPII_OK;
    int created = 0;
    if (mkdir(stage->root, 0700) == 0) {
        created = 1;
    } else if (errno != EEXIST) {
        s = status_from_errno(errno);
        goto fail;
    }
    /* Existing roots: refuse a symlink or anything not a directory. */
    struct stat lst;
    if (lstat(stage->root, &lst) != 0) {
        s = status_from_errno(errno);
        goto fail;
    }
    if (!S_ISDIR(lst.st_mode)) {
        s = MPII_ERR_UNSAFE;
        goto fail;
    }
    stage->root_fd = open(stage->root, DIR_FLAGS);
    if (stage->root_fd < 0) {
        s = (errno == ELOOP || errno == ENOTDIR) ? MPII_ERR_UNSAFE : status_from_errno(errno);
        goto fail;
    }
    struct stat st;
    if (fstat(stage->root_fd, &st) != 0) {
        s = status_from_errno(errno);
        goto fail;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || st.st_dev != lst.st_dev ||
        st.st_ino != lst.st_ino) {
        s = MPII_ERR_UNSAFE;
        goto fail;
    }
    if (created && (st.st_mode & 07777) != 0700) {
        /* The umask took bits away from the directory we just made. */
        if (fchmod(stage->root_fd, 0700) != 0) {
            s = status_from_errno(errno);
            goto fail;
        }
    } else if ((st.st_mode & 077) != 0) {
        s = MPII_ERR_UNSAFE; /* group or others may touch it */
        goto fail;
    }
    *out = stage;
    return MPII_OK;

fail:
    if (stage->root_fd >= 0)
        close_keep_errno(stage->root_fd);
    free(stage->root);
    free(stage);
    return s;
}

const char *mpii_stage_root(const mpii_stage *stage)
{
    return stage != NULL ? stage->root : NULL;
}

/* Opens (making them) the directories of original below the root, one at a
 * time, and its last component too when whole; *dirfd receives the deepest
 * (the root's own descriptor when there is none: not to be closed), *last
 * the component after it. */
static mpii_status walk_dirs(mpii_stage *stage, const char *original, int whole, int *dirfd,
                             const char **last)
{
    int fd = stage->root_fd;
    const char *p = original + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (slash == NULL && (!whole || *p == '\0'))
            break;
        size_t n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_BUF];
        mpii_status s = make_name(comp, p, n, "");
        int next = -1;
        if (s == MPII_OK)
            s = open_subdir(fd, comp, &next);
        if (fd != stage->root_fd)
            close_keep_errno(fd);
        if (s != MPII_OK)
            return s;
        fd = next;
        p = slash != NULL ? slash + 1 : p + n;
    }
    *dirfd = fd;
    *last = p;
    return MPII_OK;
}

mpii_status mpii_stage_dir(mpii_stage *stage, const char *original)
{
    if (stage == NULL)
        return MPII_ERR_INVALID;
    mpii_status s = check_original(original);
    if (s != MPII_OK)
        return s;
    int dirfd = stage->root_fd;
    const char *last = NULL;
    if ((s = walk_dirs(stage, original, 1, &dirfd, &last)) != MPII_OK)
        return s;
    if (dirfd != stage->root_fd)
        close_keep_errno(dirfd);
    return MPII_OK;
}

mpii_status mpii_stage_file(mpii_stage *stage, const char *original, const void *data, size_t len,
                            double timeout_s, char *staged, size_t staged_cap)
{
    if (stage == NULL || staged == NULL || staged_cap == 0 || (data == NULL && len > 0))
        return MPII_ERR_INVALID;
    staged[0] = '\0';
    mpii_status s = check_original(original);
    if (s != MPII_OK)
        return s;
    if (!(timeout_s > 0.0)) /* negative or NaN: do not wait */
        timeout_s = 0.0;
    if (isinf(timeout_s))
        timeout_s = 1e9;

    int w = snprintf(staged, staged_cap, "%s%s", stage->root, original);
    if (w < 0) {
        staged[0] = '\0';
        return MPII_ERR_INVALID;
    }
    if ((size_t)w >= staged_cap) {
        staged[0] = '\0';
        return MPII_ERR_TOOLONG;
    }

    int dirfd = stage->root_fd;
    const char *p = NULL;
    if ((s = walk_dirs(stage, original, 0, &dirfd, &p)) != MPII_OK) {
        staged[0] = '\0';
        return s;
    }
    s = stage_in_dir(dirfd, p, strlen(p), data, len, timeout_s);
    if (dirfd != stage->root_fd)
        close_keep_errno(dirfd);
    if (s != MPII_OK)
        staged[0] = '\0';
    return s;
}

mpii_status mpii_stage_remove(mpii_stage *stage)
{
    if (stage == NULL)
        return MPII_ERR_INVALID;
    struct stat st;
    if (fstat(stage->root_fd, &st) != 0)
        return status_from_errno(errno);
    if (st.st_nlink == 0)
        return MPII_OK; /* removed already */
    mpii_status s = remove_contents(stage->root_fd);
    if (s != MPII_OK)
        return s;
    /* rmdir() does not follow a symlink in the last component: if the root
     * was swapped for one, this fails rather than touching its target. */
    if (rmdir(stage->root) != 0 && errno != ENOENT)
        return status_from_errno(errno);
    return MPII_OK;
}

void mpii_stage_close(mpii_stage *stage)
{
    if (stage == NULL)
        return;
    if (stage->root_fd >= 0)
        (void)close(stage->root_fd);
    free(stage->root);
    free(stage);
}
