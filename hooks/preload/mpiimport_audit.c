/* mpiimport_audit.c — LD_AUDIT library: the dynamic loader's searches served
 * from the node's staged image (`mpiimport run`).
 *
 * glibc calls la_objsearch() for every candidate path of a search: the name
 * as given, then each directory of DT_RPATH/DT_RUNPATH, LD_LIBRARY_PATH, the
 * cache and the defaults, each with its glibc-hwcaps/ subdirectories. Here:
 *   - a candidate the staged image holds: the staged copy's path, so ld.so
 *     opens node-local memory and the $ORIGIN of what it loads is the staged
 *     directory (the stage keeps the original layout);
 *   - a candidate the image's listings say does not exist (its directory's
 *     listing lacks it, or an ancestor's lacks the directory): NULL, so ld.so
 *     skips it without an open() or a stat() on the shared file system;
 *   - anything else: unchanged (the real file system; counted).
 * The stage is named by MPIIMPORT_AUDIT_ROOT (set by `mpiimport run` after it
 * checked the stage's seal); its index is read once, when ld.so loads this
 * library. Without a usable index, every search passes through unchanged.
 *
 * This runs inside ld.so's audit namespace (its own copy of libc), before the
 * program's constructors; it never prints unless MPIIMPORT_AUDIT_VERBOSE=1. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpiimport/image.h"
#include "mpiimport/path_log.h"
#include "mpiimport/stage.h"
#include "mpiimport/util.h"

/* The audit interface has no context argument: this one struct is the
 * library's state, set once in la_version. */
static struct audit_state {
    mpii_image *index;
    char root[4096];      /* the held root (mpii_stage_hold): where staged files are read */
    char named[4096];     /* its name (MPIIMPORT_AUDIT_ROOT), which LD_LIBRARY_PATH's entries use */
    mpii_stage_hold hold;
    int gone;             /* the stage was removed or replaced: the originals from then on */
    unsigned long staged, skipped, passed;
    int verbose;
    mpii_path_log log; /* MPIIMPORT_RECORD_PATHS: candidates that passed through */
    /* returned names stay valid for the life of the process */
    char *names;
    size_t names_len, names_cap;
} g_audit;

static void load_index(struct audit_state *a)
{
    const char *root = getenv("MPIIMPORT_AUDIT_ROOT");
    const char *v = getenv("MPIIMPORT_AUDIT_VERBOSE");
    a->verbose = v != NULL && v[0] == '1';
    mpii_status lst = mpii_path_log_open(&a->log, getenv("MPIIMPORT_RECORD_PATHS"), "audit");
    (void)lst; /* not recording is the answer to any failure here */
    a->hold.fd = -1;
    if (root == NULL || root[0] != '/')
        return;
    size_t n = strnlen(root, sizeof a->named);
    if (n >= sizeof a->named)
        return;
    memcpy(a->named, root, n + 1);
    /* checked once, through a descriptor kept open: a directory another user
     * made under that name later is never read (mpii_stage_hold) */
    if (mpii_stage_hold_open(a->named, &a->hold) != MPII_OK)
        return;
    memcpy(a->root, a->hold.path, strlen(a->hold.path) + 1);
    char path[4200];
    if (snprintf(path, sizeof path, "%s/.mpiimport/index", a->root) >= (int)sizeof path)
        return;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (mpii_read_file(path, O_NOFOLLOW, 1, &buf, &len) != MPII_OK)
        return;
    if (mpii_image_parse(buf, len, &a->index, NULL, NULL, 0) != MPII_OK)
        a->index = NULL;
    free(buf);
}

unsigned int la_version(unsigned int version)
{
    load_index(&g_audit);
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

/* A copy of the staged path that outlives this call. */
static char *keep(struct audit_state *a, const char *staged)
{
    size_t n = strlen(staged) + 1;
    if (a->names_len + n > a->names_cap) {
        size_t cap = n > 65536 ? n : 65536;
        char *block = malloc(cap); /* a new block: earlier names stay where they are */
        if (block == NULL)
            return NULL;
        a->names = block;
        a->names_len = 0;
        a->names_cap = cap;
    }
    char *out = a->names + a->names_len;
    memcpy(out, staged, n);
    a->names_len += n;
    return out;
}

char *la_objsearch(const char *name, uintptr_t *cookie, unsigned int flag)
{
    (void)cookie;
    struct audit_state *a = &g_audit;
    if (name == NULL || name[0] != '/')
        return (char *)name; /* a bare DT_NEEDED name: ld.so builds the candidates */
    /* A candidate in the stage (LD_LIBRARY_PATH that `mpiimport run` pointed
     * at the staged directories by name, $ORIGIN of a staged library: the
     * held root) is answered as its original: what the image lacks is
     * looked for there, and a stage this process cannot use (not its
     * user's, removed, replaced) is never read by name. */
    size_t rl = strlen(a->root), nl = strlen(a->named);
    if (rl > 0 && strncmp(name, a->root, rl) == 0 && name[rl] == '/')
        name += rl;
    else if (nl > 0 && strncmp(name, a->named, nl) == 0 && name[nl] == '/')
        name += nl;
    if (a->index == NULL || a->gone) {
        mpii_path_log_add(&a->log, name); /* (ld.so searches one thread at a time) */
        return (char *)name;
    }
    char path[4096 + 4096];
    mpii_stage_answer ans = mpii_stage_image_resolve(a->index, a->root, name, path, sizeof path);
    if (ans != MPII_ANSWER_UNKNOWN && !mpii_stage_hold_valid(&a->hold)) {
        a->gone = 1;
        fprintf(stderr, "mpiimport run: the stage %s was removed or replaced while process %ld ran; its "
                "libraries come from the originals from now on\n", a->named, (long)getpid());
        return (char *)name;
    }
    if (ans == MPII_ANSWER_STAGED) {
        char *staged = keep(a, path);
        if (staged != NULL) {
            a->staged++;
            if (a->verbose)
                fprintf(stderr, "mpiimport audit: %s -> %s (flag %u)\n", name, staged, flag);
            return staged;
        }
    }
    if (ans == MPII_ANSWER_ABSENT || ans == MPII_ANSWER_NOTDIR || ans == MPII_ANSWER_DIR) {
        a->skipped++;
        return NULL; /* no such file, or a directory: nothing to load there */
    }
    a->passed++;
    mpii_path_log_add(&a->log, name);
    if (a->verbose)
        fprintf(stderr, "mpiimport audit: %s passes through (flag %u)\n", name, flag);
    return (char *)name;
}
