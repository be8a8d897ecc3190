/* stage_image.c — STAGE for more than one job step: a packed image staged on
 * a node (`mpiimport stage app.mpii`, one task per node) so that later job
 * steps on that node serve from it with no collective and no shared-file-
 * system call.
 *
 * Layout: <stage_dir>/mpiimport-<uid>-image-<16 hex: hash of the image's
 * absolute path>/, holding every file of the image at its original path
 * (as a job's stage does, so $ORIGIN resolves), and
 *   .mpiimport/index   the image's facts, serialised and checksummed: its
 *                      files as stat data flagged MPII_FILE_STAGED, its
 *                      listings, misses and compiled code;
 *   .mpiimport/seal    written last: "MPIISEAL", a version, the image's
 *                      payload checksum and size, the index's size, and the
 *                      image's path.
 * Staging writes all of it under "<root>.part-<pid>" and renames that into
 * place, so a root is either whole and sealed or absent: a killed stager
 * leaves only a .part directory, never a half stage under the real name.
 *
 * Loading checks the seal (magic, version, the path it names) and parses the
 * index (checksum, bounds; its size must be the seal's): node-local calls
 * only, a cost of the index's size, not of the number of its files; the
 * image itself is not touched. Anything else is refused (MPII_ERR_CORRUPT
 * and friends): the caller imports without it. Each staged copy is checked
 * when it is used (a regular file, not a link, of the size the index says):
 * one that is not is never served, its original is.
 * A stage is the image as it was when staged: after packing again, stage
 * again (the new image replaces the old stage when its checksum differs).
 *
 * A staged image has no registry (stage_registry.c), so start-up sweeps
 * leave it alone; mpii_unstage_image removes it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpiimport/checksum.h"
#include "mpiimport/image.h"
#include "mpiimport/stage.h"
#include "mpiimport/util.h"

#define SEAL_MAGIC "MPIISEAL"
#define SEAL_VERSION 1u
#define SEAL_FIXED 40u /* magic, u32 version, u32 path length, u64 checksum, u64 size, u64 index size */
#define INDEX_NAME "/.mpiimport/index"
#define SEAL_NAME "/.mpiimport/seal"
#define ROOTS_NAME "/.mpiimport/roots"
#define ROOT_MAX 4096

/* The image's absolute path as named (relative to the working directory:
 * no file-system call), which names the stage. */
static mpii_status absolute(const char *image_path, char *out, size_t cap)
{
    int n;
    if (image_path == NULL || image_path[0] == '\0')
        return MPII_ERR_INVALID;
    if (image_path[0] == '/') {
        n = snprintf(out, cap, "%s", image_path);
    } else {
        char cwd[ROOT_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return MPII_ERR_IO;
        n = snprintf(out, cap, "%s/%s", cwd, image_path);
    }
    return n > 0 && (size_t)n < cap ? MPII_OK : MPII_ERR_TOOLONG;
}

mpii_status mpii_stage_image_root(const char *stage_dir, const char *image_path, char *root,
                                  size_t cap)
{
    char abs[ROOT_MAX];
    mpii_status st = absolute(image_path, abs, sizeof abs);
    if (st != MPII_OK)
        return st;
    uint64_t h = mpii_checksum64(abs, strlen(abs), 0);
    int n = snprintf(root, cap, "%s/mpiimport-%lu-image-%016llx", stage_dir,
                     (unsigned long)geteuid(), (unsigned long long)h);
    return n > 0 && (size_t)n < cap ? MPII_OK : MPII_ERR_TOOLONG;
}

struct seal {
    uint64_t image_checksum, image_size, index_size;
    char path[ROOT_MAX];
};

static mpii_status read_seal(const char *root, struct seal *seal)
{
    char path[ROOT_MAX + 64];
    if (snprintf(path, sizeof path, "%s" SEAL_NAME, root) >= (int)sizeof path)
        return MPII_ERR_TOOLONG;
    uint8_t *buf = NULL;
    size_t len = 0;
    mpii_status st = mpii_read_file(path, O_NOFOLLOW, 1, &buf, &len);
    if (st != MPII_OK)
        return st;
    uint32_t plen = len >= SEAL_FIXED ? mpii_get_u32(buf + 12) : 0;
    if (len < SEAL_FIXED || memcmp(buf, SEAL_MAGIC, 8) != 0 || mpii_get_u32(buf + 8) != SEAL_VERSION ||
        plen >= sizeof seal->path || len != SEAL_FIXED + plen) {
        free(buf);
        return MPII_ERR_CORRUPT;
    }
    seal->image_checksum = mpii_get_u64(buf + 16);
    seal->image_size = mpii_get_u64(buf + 24);
    seal->index_size = mpii_get_u64(buf + 32);
    memcpy(seal->path, buf + SEAL_FIXED, plen);
    seal->path[plen] = '\0';
    free(buf);
    return MPII_OK;
}

/* every_file: also stat every staged file (the stager deciding whether a
 * stage is whole; a process using it checks each copy when it uses it). */
static mpii_status load(const char *root, const char *abs_image, mpii_image **index,
                        struct seal *seal, int every_file)
{
    mpii_status st = read_seal(root, seal);
    if (st != MPII_OK)
        return st;
    if (strcmp(seal->path, abs_image) != 0)
        return MPII_ERR_NOTFOUND; /* another image's stage under the same hash */
    char path[ROOT_MAX + 64];
    if (snprintf(path, sizeof path, "%s" INDEX_NAME, root) >= (int)sizeof path)
        return MPII_ERR_TOOLONG;
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((st = mpii_read_file(path, O_NOFOLLOW, 1, &buf, &len)) != MPII_OK)
        return st == MPII_ERR_NOTFOUND ? MPII_ERR_CORRUPT : st;
    if (len != seal->index_size) {
        free(buf);
        return MPII_ERR_CORRUPT;
    }
    mpii_image *img = NULL;
    st = mpii_image_parse(buf, len, &img, NULL, NULL, 0);
    free(buf);
    if (st != MPII_OK)
        return st;
    /* A process using the stage does not stat() the staged files here (that
     * cost every process of every step one call per file of the image:
     * 20,000 files, 0.3 s): a sealed stage was written whole (each file
     * under a temporary name, renamed; the seal last), and each staged copy
     * is checked when it is used (resolve_plain, read_staged). */
    for (size_t i = 0; every_file && st == MPII_OK && i < mpii_image_count(img); i++) {
        const mpii_entry *e = mpii_image_entry_at(img, i);
        if (e->kind != MPII_ENTRY_FILE || !(e->flags & MPII_FILE_STAGED))
            continue;
        struct stat sb;
        if (snprintf(path, sizeof path, "%s%s", root, e->path) >= (int)sizeof path)
            st = MPII_ERR_TOOLONG;
        else if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != e->size)
            st = MPII_ERR_CORRUPT;
    }
    if (st != MPII_OK) {
        mpii_image_destroy(img);
        return st;
    }
    *index = img;
    return MPII_OK;
}

/* ---- the held root ---- */

/* Descriptors below this are left to the program (a shell's "exec 3<f",
 * dup2 onto numbers it chose); above RLIMIT_NOFILE the first free one. */
#define HOLD_FD_MIN 700

mpii_status mpii_stage_hold_open(const char *root, mpii_stage_hold *hold)
{
    if (root == NULL || hold == NULL)
        return MPII_ERR_INVALID;
    hold->fd = -1;
    hold->path[0] = '\0';
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? MPII_ERR_NOTFOUND
               : errno == ELOOP || errno == ENOTDIR ? MPII_ERR_UNSAFE : MPII_ERR_IO;
    struct stat sb, pb;
    if (fstat(fd, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077) != 0 ||
        (sb.st_mode & S_ISVTX) != 0) {
        int ok = close(fd) == 0;
        (void)ok;
        return MPII_ERR_UNSAFE; /* another user's, open to others, or being removed */
    }
    int high = fcntl(fd, F_DUPFD_CLOEXEC, HOLD_FD_MIN);
    if (high >= 0) {
        int ok = close(fd) == 0;
        (void)ok;
        fd = high;
    }
    hold->fd = fd;
    hold->dev = (uint64_t)sb.st_dev;
    hold->ino = (uint64_t)sb.st_ino;
    int n = snprintf(hold->path, sizeof hold->path, "/proc/self/fd/%d", fd);
    /* the name must lead to the directory (no /proc: the stage is not used) */
    if (n <= 0 || (size_t)n >= sizeof hold->path || stat(hold->path, &pb) != 0 || pb.st_dev != sb.st_dev ||
        pb.st_ino != sb.st_ino) {
        mpii_stage_hold_close(hold);
        return MPII_ERR_UNSAFE;
    }
    return MPII_OK;
}

int mpii_stage_hold_valid(const mpii_stage_hold *hold)
{
    struct stat sb;
    return hold != NULL && hold->fd >= 0 && fstat(hold->fd, &sb) == 0 && (uint64_t)sb.st_dev == hold->dev &&
           (uint64_t)sb.st_ino == hold->ino && sb.st_nlink > 0 && (sb.st_mode & S_ISVTX) == 0;
}

void mpii_stage_hold_close(mpii_stage_hold *hold)
{
    if (hold == NULL)
        return;
    if (hold->fd >= 0) {
        int ok = close(hold->fd) == 0;
        (void)ok;
    }
    hold->fd = -1;
    hold->path[0] = '\0';
}

mpii_status mpii_stage_image_load(const char *stage_dir, const char *image_path, char *root,
                                  size_t root_cap, mpii_stage_hold *hold, mpii_image **index)
{
    if (stage_dir == NULL || image_path == NULL || root == NULL || hold == NULL || index == NULL)
        return MPII_ERR_INVALID;
    char abs[ROOT_MAX];
    mpii_status st = absolute(image_path, abs, sizeof abs);
    if (st == MPII_OK)
        st = mpii_stage_image_root(stage_dir, image_path, root, root_cap);
    if (st == MPII_OK)
        st = mpii_stage_hold_open(root, hold);
    if (st != MPII_OK)
        return st;
    struct seal seal;
    if ((st = load(hold->path, abs, index, &seal, 0)) != MPII_OK)
        mpii_stage_hold_close(hold);
    return st;
}

/* Marks a root of this user as going (its sticky bit, seen by every
 * process holding it: mpii_stage_hold_valid), through a descriptor. */
static void mark_going(const char *root)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return;
    if (fstat(fd, &sb) == 0 && sb.st_uid == geteuid()) {
        int rc = fchmod(fd, (sb.st_mode & 07777) | S_ISVTX);
        (void)rc; /* the removal below goes on; holders then find it unlinked */
    }
    int ok = close(fd) == 0;
    (void)ok;
}

static mpii_status remove_root(const char *root)
{
    struct stat sb;
    if (lstat(root, &sb) != 0)
        return errno == ENOENT ? MPII_OK : MPII_ERR_IO;
    if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid())
        return MPII_ERR_UNSAFE; /* another user's name: not ours to remove */
    mark_going(root);
    mpii_stage *stage = NULL;
    mpii_status st = mpii_stage_open(root, &stage);
    if (st != MPII_OK)
        return st;
    st = mpii_stage_remove(stage);
    mpii_stage_close(stage);
    return st;
}

/* The directory part of an absolute path ("/" for "/a"); *name the rest.
 * 0 when path has no parent that fits. */
static int parent_of(const char *path, char *dir, size_t cap, const char **name)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (slash == NULL || slash[1] == '\0' || n >= cap)
        return 0;
    memcpy(dir, path, n);
    dir[n] = '\0';
    *name = slash + 1;
    return 1;
}

/* A listed directory and the directories it lists, made in the stage (so
 * that every directory the image knows exists there: `mpiimport run`'s
 * libraries answer stat() of it, and the dynamic loader's search of it,
 * from node-local memory). */
static mpii_status stage_listed_dirs(mpii_stage *stage, const mpii_entry *listing)
{
    mpii_status st = mpii_stage_dir(stage, listing->path);
    char sub[ROOT_MAX + 256];
    for (size_t i = 0; st == MPII_OK && i < mpii_listing_count(listing); i++) {
        const char *name = NULL;
        size_t len = 0;
        mpii_dirent_type type = MPII_DIRENT_OTHER;
        if ((st = mpii_listing_at(listing, i, &name, &len, &type)) != MPII_OK)
            break;
        if (type != MPII_DIRENT_DIR)
            continue;
        int n = snprintf(sub, sizeof sub, "%s/%.*s", listing->path, (int)len, name);
        if (n < 0 || (size_t)n >= sizeof sub)
            continue; /* too long to stage: it stays unknown */
        mpii_status dst = mpii_stage_dir(stage, sub);
        if (dst == MPII_ERR_NOSPACE)
            st = dst;
    }
    return st;
}

/* ".mpiimport/roots": for each directory the image lists whose parent it
 * does not (the tops of the shared prefixes), "d PATH" or "l PATH" as the
 * original is a directory or a symbolic link, from one lstat() each here
 * (once per node): `mpiimport run`'s lstat()/readlink() of those tops, whose
 * link-ness no listing records, are answered from it. */
static mpii_status stage_roots(mpii_stage *stage, const mpii_image *img, double timeout_s)
{
    char *text = NULL;
    size_t len = 0, cap = 0;
    mpii_status st = MPII_OK;
    for (size_t i = 0; st == MPII_OK && i < mpii_image_count(img); i++) {
        const mpii_entry *e = mpii_image_entry_at(img, i);
        if (e->kind != MPII_ENTRY_LISTING || strcmp(e->path, "/") == 0)
            continue;
        char parent[ROOT_MAX];
        const char *name = NULL;
        struct stat sb;
        if (!parent_of(e->path, parent, sizeof parent, &name) ||
            mpii_image_lookup(img, MPII_ENTRY_LISTING, parent) != NULL || lstat(e->path, &sb) != 0 ||
            !(S_ISDIR(sb.st_mode) || S_ISLNK(sb.st_mode)))
            continue;
        size_t need = strlen(e->path) + 4;
        if (len + need > cap) {
            size_t ncap = (len + need) * 2 + 256;
            char *t = realloc(text, ncap);
            if (t == NULL) {
                st = MPII_ERR_NOMEM;
                break;
            }
            text = t;
            cap = ncap;
        }
        len += (size_t)snprintf(text + len, cap - len, "%c %s\n", S_ISLNK(sb.st_mode) ? 'l' : 'd', e->path);
    }
    char staged[ROOT_MAX + 64];
    if (st == MPII_OK)
        st = mpii_stage_file(stage, ROOTS_NAME, text != NULL ? text : "", len, timeout_s, staged,
                             sizeof staged);
    free(text);
    return st;
}

/* Writes the stage under tmp: files, index, then the seal. */
static mpii_status write_stage(const char *tmp, const char *abs, const mpii_image *img,
                               uint64_t checksum, uint64_t size, double timeout_s,
                               uint64_t *files, uint64_t *bytes)
{
    mpii_stage *stage = NULL;
    mpii_status st = mpii_stage_open(tmp, &stage);
    if (st != MPII_OK)
        return st;
    mpii_image *index = NULL;
    st = mpii_image_create(&index);
    char staged[ROOT_MAX + 64];
    for (size_t i = 0; st == MPII_OK && i < mpii_image_count(img); i++) {
        mpii_entry e = *mpii_image_entry_at(img, i);
        if (e.kind == MPII_ENTRY_FILE && !(e.flags & (MPII_FILE_STAT_ONLY | MPII_FILE_DATA_OMITTED))) {
            if (e.data_len != e.size) {
                st = MPII_ERR_CORRUPT;
                break;
            }
            st = mpii_stage_file(stage, e.path, e.data, e.data_len, timeout_s, staged, sizeof staged);
            if (st != MPII_OK)
                break;
            /* the original's mtime: a stat() answered from the stage (mpiimport run)
             * shows what a bytecode cache was checked against */
            struct timespec times[2] = {{0, UTIME_OMIT},
                                        {(time_t)(e.mtime_ns / 1000000000), (long)(e.mtime_ns % 1000000000)}};
            if (e.mtime_ns >= 0 && utimensat(AT_FDCWD, staged, times, AT_SYMLINK_NOFOLLOW) != 0) {
                st = MPII_ERR_IO;
                break;
            }
            (*files)++;
            *bytes += e.data_len;
            e.flags |= MPII_FILE_STAGED;
            e.data = NULL;
            e.data_len = 0;
        }
        if (e.kind == MPII_ENTRY_LISTING && strcmp(e.path, "/") != 0)
            st = stage_listed_dirs(stage, mpii_image_entry_at(img, i)); /* (the image's own entry) */
        if (st == MPII_OK)
            st = mpii_image_add(index, &e);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (st == MPII_OK)
        st = mpii_image_serialize(index, 0, "staged image", &buf, &len);
    mpii_image_destroy(index);
    if (st == MPII_OK)
        st = stage_roots(stage, img, timeout_s);
    if (st == MPII_OK)
        st = mpii_stage_file(stage, INDEX_NAME, buf, len, timeout_s, staged, sizeof staged);
    free(buf);
    size_t plen = strlen(abs);
    uint8_t *seal = st == MPII_OK ? malloc(SEAL_FIXED + plen) : NULL;
    if (st == MPII_OK && seal == NULL)
        st = MPII_ERR_NOMEM;
    if (st == MPII_OK) {
        memcpy(seal, SEAL_MAGIC, 8);
        mpii_put_u32(seal + 8, SEAL_VERSION);
        mpii_put_u32(seal + 12, (uint32_t)plen);
        mpii_put_u64(seal + 16, checksum);
        mpii_put_u64(seal + 24, size);
        mpii_put_u64(seal + 32, (uint64_t)len);
        memcpy(seal + SEAL_FIXED, abs, plen);
        st = mpii_stage_file(stage, SEAL_NAME, seal, SEAL_FIXED + plen, timeout_s, staged,
                             sizeof staged);
    }
    free(seal);
    if (st != MPII_OK) {
        mpii_status rm = mpii_stage_remove(stage);
        (void)rm; /* the .part directory is this process's own; a later stage retries */
    }
    mpii_stage_close(stage);
    return st;
}

mpii_status mpii_stage_image_bytes(const char *stage_dir, const char *image_path, const uint8_t *buf,
                                   size_t len, double timeout_s, int *already, uint64_t *files,
                                   uint64_t *bytes)
{
    if (stage_dir == NULL || image_path == NULL || buf == NULL || already == NULL || files == NULL ||
        bytes == NULL)
        return MPII_ERR_INVALID;
    *already = 0;
    *files = *bytes = 0;
    char abs[ROOT_MAX], root[ROOT_MAX], tmp[ROOT_MAX + 32];
    mpii_status st = absolute(image_path, abs, sizeof abs);
    if (st == MPII_OK)
        st = mpii_stage_image_root(stage_dir, image_path, root, sizeof root);
    if (st != MPII_OK)
        return st;
    mpii_image *img = NULL;
    if ((st = mpii_image_parse(buf, len, &img, NULL, NULL, 0)) != MPII_OK)
        return st;
    /* the payload checksum of the header: the image's identity */
    uint64_t checksum = mpii_get_u64(buf + 40);
    struct seal seal;
    mpii_image *old = NULL;
    mpii_stage_hold held = MPII_STAGE_HOLD_INIT;
    if (mpii_stage_hold_open(root, &held) == MPII_OK) {
        int same = 0;
        if (load(held.path, abs, &old, &seal, 1) == MPII_OK) {
            mpii_image_destroy(old);
            same = seal.image_checksum == checksum && seal.image_size == len;
        }
        mpii_stage_hold_close(&held);
        if (same) {
            *already = 1;
            mpii_image_destroy(img);
            return MPII_OK;
        }
    }
    if (snprintf(tmp, sizeof tmp, "%s.part-%ld", root, (long)getpid()) >= (int)sizeof tmp) {
        mpii_image_destroy(img);
        return MPII_ERR_TOOLONG;
    }
    if ((st = remove_root(tmp)) == MPII_OK)
        st = write_stage(tmp, abs, img, checksum, len, timeout_s, files, bytes);
    mpii_image_destroy(img);
    if (st != MPII_OK)
        return st;
    /* an older (other checksum) or broken stage of this image gives way */
    if ((st = remove_root(root)) == MPII_OK && rename(tmp, root) != 0)
        st = errno == EEXIST || errno == ENOTEMPTY ? MPII_OK : MPII_ERR_IO; /* another stager won */
    if (st != MPII_OK || lstat(tmp, &(struct stat){0}) == 0) {
        mpii_status rm = remove_root(tmp);
        (void)rm;
    }
    return st;
}

mpii_status mpii_stage_image(const char *stage_dir, const char *image_path, double timeout_s,
                             int *already, uint64_t *files, uint64_t *bytes)
{
    if (stage_dir == NULL || image_path == NULL || already == NULL || files == NULL || bytes == NULL)
        return MPII_ERR_INVALID;
    char abs[ROOT_MAX];
    mpii_status st = absolute(image_path, abs, sizeof abs);
    if (st != MPII_OK)
        return st;
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((st = mpii_read_file(abs, 0, 0, &buf, &len)) != MPII_OK)
        return st;
    st = mpii_stage_image_bytes(stage_dir, image_path, buf, len, timeout_s, already, files, bytes);
    free(buf);
    return st;
}

mpii_status mpii_unstage_image(const char *stage_dir, const char *image_path, int *removed)
{
    if (stage_dir == NULL || image_path == NULL || removed == NULL)
        return MPII_ERR_INVALID;
    *removed = 0;
    char root[ROOT_MAX];
    mpii_status st = mpii_stage_image_root(stage_dir, image_path, root, sizeof root);
    if (st != MPII_OK)
        return st;
    struct stat sb;
    if (lstat(root, &sb) != 0)
        return errno == ENOENT ? MPII_OK : MPII_ERR_IO;
    st = remove_root(root);
    *removed = st == MPII_OK;
    return st;
}

/* ---- answering paths from a staged image's index (the audit and preload
 * libraries of `mpiimport run`) ---- */

/* What the listings say of a plain absolute path (no "//", ".", "..", no
 * trailing "/"): ABSENT (it does not exist), NOTDIR (a component before its
 * last is a regular file, or a link to one: the file system says ENOTDIR),
 * or UNKNOWN (they cannot tell, or it exists). The nearest ancestor with a
 * known listing (or miss) decides. */
static mpii_stage_answer known_absent(const mpii_image *index, const char *path)
{
    char dir[ROOT_MAX];
    size_t len = strnlen(path, sizeof dir);
    if (len >= sizeof dir)
        return MPII_ANSWER_UNKNOWN;
    memcpy(dir, path, len + 1);
    for (char *slash = strrchr(dir, '/'); slash != NULL; slash = strrchr(dir, '/')) {
        const char *child = path + (slash - dir) + 1; /* the component below this ancestor */
        const char *end = strchr(child, '/');
        int at_root = slash == dir;
        if (at_root)
            slash[1] = '\0';
        else
            *slash = '\0';
        const mpii_entry *miss = mpii_image_lookup(index, MPII_ENTRY_MISS, dir);
        if (miss != NULL) /* an ancestor that is not there, or is no directory */
            return (miss->flags & MPII_MISS_NOT_DIR) ? MPII_ANSWER_NOTDIR : MPII_ANSWER_ABSENT;
        const mpii_entry *listing = mpii_image_lookup(index, MPII_ENTRY_LISTING, dir);
        if (listing != NULL) {
            char name[256];
            size_t nlen = end != NULL ? (size_t)(end - child) : strlen(child);
            if (nlen == 0 || nlen >= sizeof name)
                return MPII_ANSWER_UNKNOWN;
            memcpy(name, child, nlen);
            name[nlen] = '\0';
            int type = mpii_listing_find(listing, name);
            if (type == 0)
                return MPII_ANSWER_ABSENT;
            if (end == NULL || type == MPII_DIRENT_DIR)
                return MPII_ANSWER_UNKNOWN;
            /* a path through a regular file: ENOTDIR; through anything else
             * (a dangling link, a socket) the image cannot tell */
            return type == MPII_DIRENT_FILE ? MPII_ANSWER_NOTDIR : MPII_ANSWER_UNKNOWN;
        }
        if (at_root)
            break;
    }
    return MPII_ANSWER_UNKNOWN;
}

/* The answer for a plain absolute path (see known_absent). */
static mpii_stage_answer resolve_plain(const mpii_image *index, const char *root, const char *path,
                                       char *staged, size_t cap)
{
    const mpii_entry *e = mpii_image_lookup(index, MPII_ENTRY_FILE, path);
    if (e != NULL && (e->flags & MPII_FILE_STAGED)) {
        /* the staged copy, checked when it is used (one node-local stat),
         * not every file of the stage at load: a copy that is not what the
         * index says (damaged, or gone) is never served, the original is */
        struct stat sb;
        int n = snprintf(staged, cap, "%s%s", root, path);
        return n > 0 && (size_t)n < cap && lstat(staged, &sb) == 0 && S_ISREG(sb.st_mode) &&
                       (uint64_t)sb.st_size == e->size
                   ? MPII_ANSWER_STAGED
                   : MPII_ANSWER_UNKNOWN;
    }
    if (mpii_image_lookup(index, MPII_ENTRY_LISTING, path) != NULL) {
        int n = snprintf(staged, cap, "%s%s", root, strcmp(path, "/") == 0 ? "" : path);
        if (cap > 0 && (n < 0 || (size_t)n >= cap))
            staged[0] = '\0'; /* (the staged directory's name does not fit: none) */
        return MPII_ANSWER_DIR;
    }
    /* a miss of the path itself (not the not-a-directory kind, which says
     * the path exists as something else) */
    const mpii_entry *miss = mpii_image_lookup(index, MPII_ENTRY_MISS, path);
    if (miss != NULL && !(miss->flags & MPII_MISS_NOT_DIR))
        return MPII_ANSWER_ABSENT;
    return known_absent(index, path);
}

/* 1 when path needs no walk: no "//", no "." or ".." component, no
 * trailing "/" (the index holds paths spelled so). */
static int plain_path(const char *path)
{
    for (const char *p = path; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        if (p[1] == '/' || (p[1] == '\0' && p != path))
            return 0;
        if (p[1] == '.' && (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
            return 0;
    }
    return 1;
}

/* The walk of a path with "//", ".", ".." or a trailing "/", as the kernel
 * does it: out receives the path spelled plainly. A "." or a trailing "/"
 * needs the part before it to be a directory (a link to one will do); a ".."
 * needs it to be a directory that is no symbolic link (".." of a link's
 * target is the target's parent): then it removes that last component
 * (the components before it resolve the same either way). Returns UNKNOWN
 * with *sure 1 when out is the plain spelling; otherwise the answer the
 * walk found on its way (ABSENT, NOTDIR) or UNKNOWN with *sure 0 (the image
 * cannot tell: a part it does not know) or -1 (a ".." after a directory the
 * image knows, which is, or may be, a symbolic link). *need_dir: the path must
 * name a directory (it ends in "/", "/." or "/.."). */
static mpii_stage_answer walk(const mpii_image *index, const char *root, const char *path, char *out,
                              size_t cap, int *sure, int *need_dir)
{
    char scratch[ROOT_MAX + 64];
    size_t o = 1;
    *sure = 0;
    *need_dir = 0;
    if (cap < 2)
        return MPII_ANSWER_UNKNOWN;
    out[0] = '/';
    out[1] = '\0';
    for (const char *p = path; *p != '\0';) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        int dot = n == 1 && p[0] == '.', dotdot = n == 2 && p[0] == '.' && p[1] == '.';
        if (n == 0) { /* a trailing "/" */
            *need_dir = o > 1;
            break;
        }
        if (dot || dotdot) {
            *need_dir = 1;
            if (o > 1) { /* "/." and "/.." are "/" */
                mpii_stage_answer a = resolve_plain(index, root, out, scratch, sizeof scratch);
                char dir[ROOT_MAX];
                const char *name = NULL;
                if (a == MPII_ANSWER_UNKNOWN && parent_of(out, dir, sizeof dir, &name) &&
                    mpii_listing_find(mpii_image_lookup(index, MPII_ENTRY_LISTING, dir), name) ==
                        MPII_DIRENT_DIR)
                    a = MPII_ANSWER_DIR; /* its directory's listing says it is one */
                if (a == MPII_ANSWER_STAGED)
                    return MPII_ANSWER_NOTDIR;
                if (a != MPII_ANSWER_DIR)
                    return a; /* ABSENT, NOTDIR, or UNKNOWN (not sure) */
                if (dotdot) {
                    if (mpii_stage_image_is_link(index, out) != 0) {
                        *sure = -1;
                        return MPII_ANSWER_UNKNOWN;
                    }
                    while (o > 1 && out[o - 1] != '/')
                        o--;
                    if (o > 1)
                        o--; /* the slash before it, but "/" stays */
                    out[o] = '\0';
                }
            }
        } else {
            if (o + (o > 1) + n >= cap)
                return MPII_ANSWER_UNKNOWN;
            if (o > 1)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
            out[o] = '\0';
            *need_dir = 0;
        }
        p += n;
    }
    *sure = 1;
    return MPII_ANSWER_UNKNOWN;
}

int mpii_stage_image_plain(const mpii_image *index, const char *path, char *out, size_t cap)
{
    if (index == NULL || path == NULL || path[0] != '/' || out == NULL)
        return 0;
    if (plain_path(path)) {
        int n = snprintf(out, cap, "%s", path);
        return n > 0 && (size_t)n < cap;
    }
    int sure = 0, need_dir = 0;
    mpii_stage_answer a = walk(index, "", path, out, cap, &sure, &need_dir);
    if (sure < 0)
        return -1;
    return a == MPII_ANSWER_UNKNOWN && sure == 1;
}

mpii_stage_answer mpii_stage_image_resolve(const mpii_image *index, const char *root,
                                           const char *path, char *staged, size_t cap)
{
    if (index == NULL || root == NULL || path == NULL || path[0] != '/')
        return MPII_ANSWER_UNKNOWN;
    if (plain_path(path))
        return resolve_plain(index, root, path, staged, cap);
    char plain[ROOT_MAX];
    int sure = 0, need_dir = 0;
    mpii_stage_answer a = walk(index, root, path, plain, sizeof plain, &sure, &need_dir);
    if (sure != 1)
        return a;
    a = resolve_plain(index, root, plain, staged, cap);
    if (need_dir && a == MPII_ANSWER_STAGED)
        return MPII_ANSWER_NOTDIR; /* "file/", "file/.": ENOTDIR */
    return a;
}

int mpii_stage_image_program(const mpii_image *index, const char *root, const char *path,
                             char *staged, size_t cap)
{
    if (path == NULL || path[0] != '/' ||
        mpii_stage_image_resolve(index, root, path, staged, cap) != MPII_ANSWER_STAGED)
        return 0;
    int fd = open(staged, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    unsigned char head[4];
    ssize_t n = read(fd, head, sizeof head);
    int rc = close(fd);
    return rc == 0 && n == 4 && memcmp(head, "\177ELF", 4) == 0;
}

int mpii_stage_image_is_link(const mpii_image *index, const char *path)
{
    char dir[ROOT_MAX];
    const char *name = NULL;
    if (index == NULL || path == NULL || path[0] != '/' || !parent_of(path, dir, sizeof dir, &name))
        return -1;
    return mpii_listing_is_link(mpii_image_lookup(index, MPII_ENTRY_LISTING, dir), name);
}
