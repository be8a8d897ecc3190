/* image_file.c — images on disk: recorded lists in the cache directory and
 * packed application images. Reading verifies everything mpii_image_parse
 * does; writing is atomic (unique temporary file + rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpiimport/image.h"
#include "mpiimport/util.h"

mpii_status mpii_read_file(const char *path, int extra_flags, int owner_only, uint8_t **out,
                           size_t *out_len)
{
    if (path == NULL || out == NULL || out_len == NULL)
        return MPII_ERR_INVALID;
    /* O_NONBLOCK: a FIFO named here must not block the job in open() (it
     * is refused below, as is anything but a regular file). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | extra_flags);
    if (fd < 0)
        return errno == ENOENT ? MPII_ERR_NOTFOUND : errno == ELOOP ? MPII_ERR_UNSAFE : MPII_ERR_IO;
    struct stat sb;
    mpii_status st = MPII_OK;
    if (fstat(fd, &sb) != 0)
        st = MPII_ERR_IO;
    else if (!S_ISREG(sb.st_mode))
        st = MPII_ERR_NOTREG;
    else if (owner_only && sb.st_uid != geteuid())
        st = MPII_ERR_UNSAFE;
    size_t len = st == MPII_OK ? (size_t)sb.st_size : 0;
    uint8_t *buf = NULL;
    if (st == MPII_OK && (buf = malloc(len ? len : 1)) == NULL)
        st = MPII_ERR_NOMEM;
    if (st == MPII_OK)
        st = mpii_read_full(fd, buf, len);
    if (close(fd) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    if (st != MPII_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return MPII_OK;
}

mpii_status mpii_image_read_file(const char *path, mpii_image **out, char *label, size_t label_cap)
{
    if (path == NULL || out == NULL)
        return MPII_ERR_INVALID;
    uint8_t *buf = NULL;
    size_t len = 0;
    mpii_status st = mpii_read_file(path, 0, 0, &buf, &len);
    if (st != MPII_OK)
        return st;
    st = mpii_image_parse(buf, len, out, NULL, label, label_cap);
    free(buf);
    return st;
}

mpii_status mpii_image_write_file(const mpii_image *image, const char *path, const char *label)
{
    if (image == NULL || path == NULL)
        return MPII_ERR_INVALID;
    uint8_t *buf = NULL;
    size_t len = 0;
    mpii_status st = mpii_image_serialize(image, 0, label, &buf, &len);
    if (st != MPII_OK)
        return st;
    char tmp[4096];
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        ts.tv_nsec = 0;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)ts.tv_nsec);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        free(buf);
        return MPII_ERR_TOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        free(buf);
        return errno == ENOSPC ? MPII_ERR_NOSPACE : MPII_ERR_IO;
    }
    size_t off = 0;
    while (st == MPII_OK && off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            st = (errno == ENOSPC || errno == EDQUOT) ? MPII_ERR_NOSPACE : MPII_ERR_IO;
        else
            off += (size_t)w;
    }
    free(buf);
    if (st == MPII_OK && fsync(fd) != 0)
        st = MPII_ERR_IO;
    if (close(fd) != 0 && st == MPII_OK)
        st = MPII_ERR_IO;
    if (st == MPII_OK && rename(tmp, path) != 0)
        st = MPII_ERR_IO;
    if (st != MPII_OK) {
        int ok = unlink(tmp) == 0;
        (void)ok;
    }
    return st;
}
