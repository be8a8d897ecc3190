/* stage.h — node-local copies of extension modules.
 *
 * dlopen() needs a file, so extension modules received over the network are
 * written to node-local memory (default /dev/shm) under a private root
 * directory (created 0700, owned by us, never a symlink), at
 * <root>/<original absolute path>, so that $ORIGIN-relative RPATHs of bundled
 * libraries (numpy.libs/, scipy.libs/) resolve inside the staged tree too.
 *
 * Once per node: the first rank that needs a file creates "<file>.part" with
 * O_EXCL, writes it and renames it into place; other ranks on the node wait for
 * the final name (bounded by a timeout), or see "<file>.failed" and give up at
 * once (a full /dev/shm, say). No path component is followed if it is a
 * symlink. */
#ifndef MPIIMPORT_STAGE_H
#define MPIIMPORT_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpii_stage mpii_stage;

/* Creates (or, when it exists and is safe, opens) the root directory. */
mpii_status mpii_stage_open(const char *root, mpii_stage **out);
const char *mpii_stage_root(const mpii_stage *stage);

/* Makes <root>/<original> hold data (len bytes), written by one process per
 * node. staged receives the staged path. Waits at most timeout_s for another
 * writer. Returns MPII_ERR_NOSPACE when the file system is full,
 * MPII_ERR_TIMEOUT when the other writer never finished. */
mpii_status mpii_stage_file(mpii_stage *stage, const char *original, const void *data, size_t len,
                            double timeout_s, char *staged, size_t staged_cap);

/* Makes the directory <root>/<original> (and its parents), 0700. */
mpii_status mpii_stage_dir(mpii_stage *stage, const char *original);

/* Removes the root and everything below it (no symlink is followed). */
mpii_status mpii_stage_remove(mpii_stage *stage);
/* Frees the handle; does not remove files. */
void mpii_stage_close(mpii_stage *stage);

/* Who still uses a stage (stage_registry.c): "<root>.live/<pid>" per process
 * of the job on this node. register: adds this process. leave: removes it;
 * *last is set when no live process remains (the caller then discards).
 * discard: removes the root and its registry. sweep: removes this user's
 * stage roots under stage_dir whose registry names no live process and has
 * not changed for a minute (a job starting now keeps its own), the staged
 * images a killed stager left half written ("<root>.part-<pid>", the pid
 * gone), and this user's transport files "mpiimport-<pid>-<rank>-<hex16>"
 * in shm_dir whose process is gone; returns how many it removed. */
mpii_status mpii_stage_register(const char *root);
/* 1 when root has a registry (a stage made for a job step, not by
 * `mpiimport stage`), else 0. */
int mpii_stage_has_registry(const char *root);
mpii_status mpii_stage_leave(const char *root, int *last);
/* at_end: marks this process as waiting at the end of its session
 * ("<pid>.end" in the registry). all_at_end: 1 when every other live
 * process of the registry is marked so (and there is one). */
mpii_status mpii_stage_at_end(const char *root);
int mpii_stage_all_at_end(const char *root);
mpii_status mpii_stage_discard(const char *root);
size_t mpii_stage_sweep(const char *stage_dir, const char *shm_dir);

/* A packed image staged on a node for more than one job step
 * (stage_image.c). root: <stage_dir>/mpiimport-<uid>-image-<hash of the
 * image's absolute path, as named: no file-system call>. stage: reads the
 * image, writes its files, index and seal under a temporary root and renames
 * it into place; *already when a valid stage of this very image (same
 * checksum) is there (nothing written). load: the index of a sealed, valid
 * stage (seal, index checksum, every staged file's stat; node-local calls
 * only), its root in root; MPII_ERR_NOTFOUND when not staged. unstage:
 * removes it (*removed: it was there). A stage that gives way (unstaged, or
 * replaced by a changed image's) is first marked as going (its root's
 * sticky bit): the processes holding it read the originals from then on. */
#include "mpiimport/image.h"
mpii_status mpii_stage_image_root(const char *stage_dir, const char *image_path, char *root,
                                  size_t cap);
mpii_status mpii_stage_image(const char *stage_dir, const char *image_path, double timeout_s,
                             int *already, uint64_t *files, uint64_t *bytes);
/* The same from the image's bytes (buf[0..len), a whole packed image; a
 * node leader of `mpiimport run` that received them); image_path names the
 * stage and is not opened. */
mpii_status mpii_stage_image_bytes(const char *stage_dir, const char *image_path, const uint8_t *buf,
                                   size_t len, double timeout_s, int *already, uint64_t *files,
                                   uint64_t *bytes);
/* A staged image's root, held open by the process that uses it. A root is
 * named predictably (<stage_dir>/mpiimport-<uid>-image-<hash>) in a
 * directory every user writes (/dev/shm): once removed (unstaged, staged
 * anew), another user may make a directory of that name. So a process
 * checks the root once, through a descriptor (a directory, not a link,
 * owned by this user, no access for anyone else, not being removed), keeps
 * that descriptor, and reaches every staged file through it: path is
 * "/proc/self/fd/<fd>", which names that very directory whatever is done
 * to the name. fd is close-on-exec and kept above the numbers programs
 * choose themselves; a process that execs holds the root anew. valid:
 * still that directory, still in place and not being removed (an fstat),
 * else the caller stops using the stage and reads the originals. */
typedef struct mpii_stage_hold {
    int fd;
    uint64_t dev, ino;
    char path[32];
} mpii_stage_hold;
#define MPII_STAGE_HOLD_INIT {-1, 0, 0, ""}
mpii_status mpii_stage_hold_open(const char *root, mpii_stage_hold *hold);
int mpii_stage_hold_valid(const mpii_stage_hold *hold);
void mpii_stage_hold_close(mpii_stage_hold *hold);
/* root receives the root's name; hold, the held root, through which the
 * index was read (and every staged file is to be read). */
mpii_status mpii_stage_image_load(const char *stage_dir, const char *image_path, char *root,
                                  size_t root_cap, mpii_stage_hold *hold, mpii_image **index);
mpii_status mpii_unstage_image(const char *stage_dir, const char *image_path, int *removed);

/* The whole image to every node in one collective (distribute_image.c), for
 * `mpiimport run --image F` when F is not staged: rank 0 reads image_path,
 * the node leaders receive it (never the other ranks) and stage it as
 * mpii_stage_image does, each node's ranks learn the outcome from their
 * leader. Collective over every rank of t. for_this_step: a stage made here
 * is this job step's (its processes register in it and the last removes
 * it); otherwise it stays until unstaged (`mpiimport stage` as a step of
 * its own). job->staged: this node's stage is made; job->temporary: it is
 * this step's and this process is in its registry; job->leader, ->already,
 * ->files/bytes: what this process
 * staged (leaders). On failure err says which step failed; the stage is not
 * to be used on this node. */
#include "mpiimport/transport.h"
typedef struct mpii_image_job {
    int staged;
    int leader;    /* this process staged for its node */
    int already;   /* ... and found the stage there already */
    int temporary;
    uint64_t files, bytes;
} mpii_image_job;
mpii_status mpii_distribute_image(const mpii_transport_ops *ops, mpii_transport *t,
                                  const char *stage_dir, const char *image_path, double timeout_s,
                                  int for_this_step, mpii_image_job *job, char *err, size_t err_cap);

/* What a staged image's index says of an absolute path (for `mpiimport run`'s
 * audit and preload libraries), as the file system would: STAGED (staged
 * receives <root><path>, a copy with the original's bytes and mtime), DIR (a
 * directory whose listing the image holds; staged receives its staged
 * directory's name, or "" when that does not fit), ABSENT (a listing of an
 * ancestor says it does not exist: ENOENT), NOTDIR (a component that must
 * be a directory is a regular file: ENOTDIR), or UNKNOWN (the image cannot
 * tell: ask the file system). Any spelling: "//", "." and a trailing "/"
 * need a directory before them; ".." is applied only after a directory the
 * listings say is no symbolic link (else UNKNOWN). */
typedef enum mpii_stage_answer {
    MPII_ANSWER_UNKNOWN = 0,
    MPII_ANSWER_STAGED = 1,
    MPII_ANSWER_DIR = 2,
    MPII_ANSWER_ABSENT = 3,
    MPII_ANSWER_NOTDIR = 4
} mpii_stage_answer;
mpii_stage_answer mpii_stage_image_resolve(const mpii_image *index, const char *root,
                                           const char *path, char *staged, size_t cap);
/* path (absolute) spelled plainly (no "//", ".", "..", trailing "/") in
 * out, as the file system resolves it: 1 when the image is sure of that
 * (every ".." follows a directory its listings say is no link); 0 when it
 * cannot tell (a part it does not know, or the path does not resolve);
 * -1 when a ".." follows a directory the image knows that is, or may be, a
 * symbolic link. */
int mpii_stage_image_plain(const mpii_image *index, const char *path, char *out, size_t cap);
/* What the listing of path's directory says: 1 path is a symbolic link, 0
 * it is not, -1 the image cannot tell (lstat() and readlink() of a staged
 * path are answered only on 0). */
int mpii_stage_image_is_link(const mpii_image *index, const char *path);
/* 1 when path is a program the stage holds as an ELF executable (staged
 * receives its copy, to execute with argv unchanged); 0 otherwise (a script
 * would be handed to its interpreter under the staged path). */
int mpii_stage_image_program(const mpii_image *index, const char *root, const char *path,
                             char *staged, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
