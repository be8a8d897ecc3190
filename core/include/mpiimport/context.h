/* context.h — one job's import session: knowledge, protocol, staging, stats.
 *
 * The one context struct. Every rank holds "knowledge": an image of the facts
 * the root has sent. Questions (a directory listing, a file, compiled code)
 * are answered from it:
 *   - on the root, an unknown fact is read from the file system, added to the
 *     knowledge and to the outgoing image; mpii_context_flush() broadcasts the
 *     outgoing image as one message;
 *   - on other ranks, an unknown fact is MPII_ERR_GAP: the caller receives the
 *     next message (mpii_context_receive) and asks again.
 * Because knowledge only ever comes from the root, a rank that imports in
 * another order than the root never gets wrong bytes: it keeps receiving (and
 * keeping) the root's messages until its question is answered, or until the
 * timeout, when it falls back to a plain import. mpii_context_finish() has the
 * root send an end marker and the others drain every message before it, so the
 * number of broadcasts always matches. */
#ifndef MPIIMPORT_CONTEXT_H
#define MPIIMPORT_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/config.h"
#include "mpiimport/finder.h"
#include "mpiimport/image.h"
#include "mpiimport/status.h"
#include "mpiimport/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpii_stats {
    uint64_t find_count;     double find_s;   /* module lookups (mpii_context_find) */
    uint64_t read_count;     double read_s;   uint64_t read_bytes;  /* files read (root) */
    /* messages: sent (root), taken in (others: a leader over the transport,
     * any other rank from its node's index) */
    uint64_t bcast_count;    double bcast_s;  uint64_t bcast_bytes;
    uint64_t received_bytes; /* bytes received over the transport (leaders only) */
    uint64_t index_records;  uint64_t index_bytes; /* the node's index: records written (leader) or read */
    uint64_t load_count;     double load_s;   /* filled in by the hook */
    uint64_t fs_calls;       /* file-system calls this rank made for imports */
    uint64_t fs_calls_saved; /* questions answered from received knowledge instead */
    uint64_t gaps;           /* questions that needed a message */
    uint64_t fallbacks;      /* requests handed back to Python's own import */
    uint64_t out_of_order;   /* messages received that answered another request */
    uint64_t image_misses;   /* facts a replayed image lacked, fetched by this rank itself */
    uint64_t staged_files;   uint64_t staged_bytes; /* files this rank wrote to the stage */
    uint64_t swept;          /* leftovers of killed jobs this rank removed at start-up */
} mpii_stats;

typedef struct mpii_context mpii_context;

/* Collective: initialises the transport named in cfg (or, with transport
 * NULL, uses ops as given) and agrees on a job nonce. */
mpii_status mpii_context_create(const mpii_config *cfg, const mpii_transport_ops *ops,
                                mpii_context **out, char *err, size_t err_cap);
/* Collective: see above; then removes this node's stage directory (when a
 * peer of the node died, the node's last live process does). Its waits have
 * no deadline: ranks may finish any time apart, and this one waits for the
 * others as MPI_Finalize would, polling with a growing sleep (next to no
 * CPU); it gives up (MPII_ERR_TIMEOUT) only once a process of this node's
 * job is known dead (its registry entry names a pid that is gone). A dead
 * peer on another node is the launcher's business. Safe to call twice. */
mpii_status mpii_context_finish(mpii_context *ctx);
void mpii_context_destroy(mpii_context *ctx);
/* Not collective: this process stops using the node's stage (a fatal signal,
 * a failed node barrier); the node's last live process removes it. */
mpii_status mpii_context_leave_node(mpii_context *ctx);

/* The context's one lock, around every read and merge of its state. A
 * caller that asks questions from several threads holds it from a question
 * until it is done with the entries it got (they move when knowledge grows);
 * mpii_context_receive waits unlocked and takes it only to merge, so a
 * waiting rank does not block another thread's reads. Not recursive:
 * mpii_context_receive and mpii_context_finish must be called unlocked. */
void mpii_context_lock(mpii_context *ctx);
void mpii_context_unlock(mpii_context *ctx);

int mpii_context_rank(const mpii_context *ctx);
int mpii_context_size(const mpii_context *ctx);
const mpii_stats *mpii_context_stats(const mpii_context *ctx);
/* Bytes this rank holds in its knowledge (file bytes, code, listings): what
 * it keeps privately (file bytes served from the node's stage are not). */
uint64_t mpii_context_known_bytes(const mpii_context *ctx);
mpii_stats *mpii_context_stats_mut(mpii_context *ctx);
const char *mpii_context_stage_root(const mpii_context *ctx);
/* errno of the last failure to make this node's stage directory (0: none, or
 * the directory was refused as unsafe). */
int mpii_context_stage_errno(const mpii_context *ctx);

/* A one-process context (the self transport) serves from a staged image
 * (stage.h: mpii_stage_image_load): its index becomes the knowledge, the
 * stage root is the staged image's (never removed by this context), and the
 * session is frozen: no message, no collective. */
mpii_status mpii_context_use_staged(mpii_context *ctx, const char *root, const mpii_image *index);

/* Questions. *entry is NULL when the path does not exist (MISS). An unknown
 * fact is read by the root; once frozen, by every rank for itself. */
mpii_status mpii_context_listing(mpii_context *ctx, const char *dir, const mpii_entry **entry,
                                 unsigned *miss_flags);
/* want_bytes = 0 asks only for the stat. */
mpii_status mpii_context_file(mpii_context *ctx, const char *path, int want_bytes,
                              const mpii_entry **entry);
/* The bytes of a FILE entry: in memory, or (MPII_FILE_STAGED) read from the
 * node's stage into *owned, which the caller free()s (NULL when in memory). */
mpii_status mpii_context_entry_bytes(mpii_context *ctx, const mpii_entry *e, const uint8_t **data,
                                     size_t *len, void **owned);
/* The same bytes, straight into the caller's buffer of exactly
 * mpii_context_entry_size(e) bytes (no copy in between: a bytes object). */
size_t mpii_context_entry_size(const mpii_entry *e);
mpii_status mpii_context_entry_read(mpii_context *ctx, const mpii_entry *e, uint8_t *dst, size_t len);
/* The FILE entry (with bytes) known for path, or NULL: never reads, never waits. */
const mpii_entry *mpii_context_lookup(mpii_context *ctx, const char *path);
/* Root only: adds compiled code for a source file to knowledge and outgoing. */
mpii_status mpii_context_add_code(mpii_context *ctx, const char *source_path, const void *code,
                                  size_t len, int64_t mtime_ns, uint64_t size);

/* FileFinder's decision for one directory (see finder.h), through the knowledge. */
mpii_status mpii_context_find(mpii_context *ctx, const mpii_suffix_table *suffixes,
                              const char *dir, const char *name, mpii_find_result *result);

/* Root: broadcasts the outgoing facts, if any, labelled (label may be NULL).
 * Others: no-op. */
mpii_status mpii_context_flush(mpii_context *ctx, const char *label);
/* Non-root: waits up to timeout_s for the next message and adds it to the
 * knowledge. label (may be NULL) receives what it answers. MPII_ERR_TIMEOUT:
 * nothing yet (still pending); MPII_ERR_ENDED: the root has finished. */
mpii_status mpii_context_receive(mpii_context *ctx, double timeout_s, char *label,
                                 size_t label_cap);
/* Root: like mpii_context_flush, but sends even an empty message (so the
 * other ranks, which wait for exactly one, learn the session's mode). */
mpii_status mpii_context_flush_always(mpii_context *ctx, const char *label);

/* No message will be sent or received any more: the root stops broadcasting
 * (what it reads serves itself and is recorded), the others answer only from
 * what they have; the end of the session needs no drain. */
void mpii_context_freeze(mpii_context *ctx);
int mpii_context_frozen(const mpii_context *ctx);

/* Root: takes in a recorded list or a packed image. An entry that carries
 * bytes is used as it is when MPII_REPLAY_TRUST is set or when its file's size and mtime
 * (a listing: its directory's mtime) are unchanged, one stat each; anything
 * else is read afresh (a vanished file becomes a miss). Facts go to the
 * knowledge and the outgoing message. Counts go to *reused and *reread. */
#define MPII_REPLAY_TRUST 0x1u       /* a packed image, used as it is: no staleness checks */
#define MPII_REPLAY_FACTS_ONLY 0x2u  /* a recorded list: its code and bytes are never used */
mpii_status mpii_context_replay(mpii_context *ctx, const mpii_image *recorded, unsigned flags,
                                uint64_t *reused, uint64_t *reread);

/* A copy of the knowledge; with_data = 0 leaves out file and code bytes
 * (FILE entries flagged MPII_FILE_DATA_OMITTED): a recorded list. */
mpii_status mpii_context_snapshot(mpii_context *ctx, int with_data, mpii_image **out);

/* The files known by their stat only (module sources): *paths is a malloc'd
 * array (free() it) of pointers valid until the knowledge changes. */
size_t mpii_context_source_count(const mpii_context *ctx, const char ***paths);

/* Forgets what is known of one file: its FILE, MISS and CODE facts (a module
 * imported again: SourceFileLoader re-checks the source at every import).
 * Every rank forgets at the same point; the root re-reads and sends. */
void mpii_context_forget(mpii_context *ctx, const char *path);

/* Forgets every fact (importlib.invalidate_caches()). */
void mpii_context_invalidate(mpii_context *ctx);

/* How the code of a source module is to be obtained. */
typedef enum mpii_code_kind {
    MPII_CODE_PYC = 1,            /* *entry: the valid bytecode cache file */
    MPII_CODE_COMPILED = 2,       /* *entry: code the root compiled (CODE entry) */
    MPII_CODE_COMPILE_NEEDED = 3  /* root only: no valid cache; compile, then add_code */
} mpii_code_kind;

/* For a source module: its stat (*source, stat-only FILE entry) and the way to
 * its code. magic: importlib.util.MAGIC_NUMBER. MPII_ERR_NOTFOUND when the
 * source is gone. */
mpii_status mpii_context_source_code(mpii_context *ctx, const uint8_t magic[4],
                                     const char *source_path, const char *pyc_path,
                                     mpii_code_kind *kind, const mpii_entry **source,
                                     const mpii_entry **entry);

/* Makes the extension module at path known with its bytes, and with it every
 * bundled library it reaches through a $ORIGIN-relative RPATH/RUNPATH (found
 * in the listing of that directory), transitively. Root: reads them; others:
 * MPII_ERR_GAP until received. */
mpii_status mpii_context_extension(mpii_context *ctx, const char *path);

/* Stages an extension module made known by mpii_context_extension, and its
 * bundled libraries, at their original layout under this node's stage
 * directory; staged receives the module's staged path. */
mpii_status mpii_context_stage(mpii_context *ctx, const char *path, char *staged,
                               size_t staged_cap);

#ifdef __cplusplus
}
#endif
#endif
