/* image.h — the unit of distribution: a set of file-system facts.
 *
 * An image holds entries, each keyed by (kind, absolute path):
 *   FILE     a regular file's stat (size, mtime) and, unless STAT_ONLY, its bytes;
 *   LISTING  a directory's names, each with its type (symlinks resolved);
 *   MISS     a path that does not exist (or, flagged NOT_DIR, exists but is not
 *            a directory when a directory was wanted);
 *   CODE     the marshalled code object the root compiled for a source file
 *            whose bytecode cache was missing or stale.
 * Ranks keep one image as their knowledge; the root sends the facts it adds as
 * serialised images ("messages"). The wire format is versioned and checksummed:
 *
 *   header (48 bytes, little endian)
 *     magic "MPIIMG\r\n" | u32 version | u32 flags | u64 sequence |
 *     u64 entry count | u64 payload length | u64 checksum of payload
 *   payload
 *     u16 label length, label bytes (what the message answers, for diagnostics)
 *     per entry: u8 kind | u8 0 | u16 flags | u32 path length | u64 data length |
 *                i64 mtime (ns) | u64 size | path bytes | data bytes
 *
 * Listing data is a sequence of (u8 type | u16 name length | name bytes) in
 * the directory's own order (readdir's, what a plain os.listdir shows); a
 * name index sorted when the image is built makes lookups binary searches. */
#ifndef MPIIMPORT_IMAGE_H
#define MPIIMPORT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: listings mark symbolic links (MPII_DIRENT_LINK); version 1 images,
 * which cannot tell, are refused (pack again).
 * 3: listings keep the directory's order (version 2 sorted them by name);
 * version 2 images are refused (pack again): their order is not the
 * directory's, and a version 2 reader would refuse the new order. */
#define MPII_IMAGE_VERSION 3u
#define MPII_IMAGE_HEADER_SIZE 48u
#define MPII_IMAGE_LABEL_MAX 1024u

typedef enum mpii_entry_kind {
    MPII_ENTRY_FILE = 1,
    MPII_ENTRY_LISTING = 2,
    MPII_ENTRY_MISS = 3,
    MPII_ENTRY_CODE = 4
} mpii_entry_kind;

/* FILE: only the stat is carried, not the bytes. */
#define MPII_FILE_STAT_ONLY 0x1u
/* FILE: the bytes were left out of this copy (a recorded list), though the
 * fact was about the file's contents: read them again when replaying. */
#define MPII_FILE_DATA_OMITTED 0x4u
/* FILE, in a rank's knowledge only (never sent): the bytes are in the node's
 * stage at <stage root><path> (serve.c), not in memory. */
#define MPII_FILE_STAGED 0x8u
/* MISS: the path exists but is not a directory (a zip file on sys.path, say). */
#define MPII_MISS_NOT_DIR 0x2u
/* MISS, with NOT_DIR: a file read found that a component of the path is not a
 * directory (ENOTDIR: "pkg.egg-info/PKG-INFO" under an egg-info file), so
 * nothing is at the path: it answers a file question too. */
#define MPII_MISS_UNDER_FILE 0x4u

typedef enum mpii_dirent_type {
    MPII_DIRENT_FILE = 1,  /* regular file, or symlink to one */
    MPII_DIRENT_DIR = 2,   /* directory, or symlink to one */
    MPII_DIRENT_OTHER = 3, /* anything else, dangling symlinks included */
    /* or'd into a stored type: the name is a symbolic link (to what the rest
     * says). mpii_listing_find and mpii_listing_at return types without it;
     * mpii_listing_is_link tells. */
    MPII_DIRENT_LINK = 0x10
} mpii_dirent_type;

typedef struct mpii_entry {
    mpii_entry_kind kind;
    uint32_t flags;
    const char *path;     /* NUL-terminated absolute path */
    size_t path_len;
    const uint8_t *data;  /* file bytes, encoded listing, or marshalled code */
    size_t data_len;
    int64_t mtime_ns;     /* FILE/CODE: the (source) file's mtime */
    uint64_t size;        /* FILE/CODE: the (source) file's size */
} mpii_entry;

typedef struct mpii_image mpii_image;

mpii_status mpii_image_create(mpii_image **out);
void mpii_image_destroy(mpii_image *image);
/* Removes every entry. */
void mpii_image_clear(mpii_image *image);

/* Removes the entry of this kind and path, if any (pointers to entries of
 * this image are invalid afterwards). */
void mpii_image_remove(mpii_image *image, mpii_entry_kind kind, const char *path);

/* Copies the entry in; an entry of the same kind and path is replaced. */
mpii_status mpii_image_add(mpii_image *image, const mpii_entry *entry);
mpii_status mpii_image_add_file(mpii_image *image, const char *path, const void *data,
                                size_t len, int64_t mtime_ns, uint64_t size, uint32_t flags);
mpii_status mpii_image_add_miss(mpii_image *image, const char *path, uint32_t flags);
mpii_status mpii_image_add_code(mpii_image *image, const char *source_path, const void *code,
                                size_t len, int64_t mtime_ns, uint64_t size);
/* names[i] with types[i], kept in this order (the directory's: readdir's);
 * need not be sorted, duplicates are an error. */
mpii_status mpii_image_add_listing(mpii_image *image, const char *dir, const char *const *names,
                                   const mpii_dirent_type *types, size_t count);

/* As mpii_image_add_listing, with the directory's mtime recorded. */
mpii_status mpii_image_add_listing_at(mpii_image *image, const char *dir, const char *const *names,
                                      const mpii_dirent_type *types, size_t count,
                                      int64_t mtime_ns);

/* Reads a whole regular file (an image, a node's index record, a seal) into
 * a malloc'd buffer; extra_flags are added to open() (O_NOFOLLOW: a symlink
 * is MPII_ERR_UNSAFE); owner_only: a file of another user is MPII_ERR_UNSAFE.
 * MPII_ERR_NOTFOUND when it does not exist, MPII_ERR_NOTREG for a FIFO, a
 * device or a directory (never blocking in open()). */
mpii_status mpii_read_file(const char *path, int extra_flags, int owner_only, uint8_t **out,
                           size_t *out_len);
/* Reads and parses a whole image file (see mpii_image_parse). */
mpii_status mpii_image_read_file(const char *path, mpii_image **out, char *label,
                                 size_t label_cap);
/* Writes the image to path atomically: a unique temporary file in the same
 * directory, flushed, then renamed over path. A job killed meanwhile leaves
 * the old file or none, never a partial one. */
mpii_status mpii_image_write_file(const mpii_image *image, const char *path, const char *label);

/* The entry of this kind at this path, or NULL. Valid until the image changes. */
const mpii_entry *mpii_image_lookup(const mpii_image *image, mpii_entry_kind kind,
                                    const char *path);
size_t mpii_image_count(const mpii_image *image);
const mpii_entry *mpii_image_entry_at(const mpii_image *image, size_t index);
/* Sum of the data bytes of all entries. */
uint64_t mpii_image_data_bytes(const mpii_image *image);

/* Adds (replacing) every entry of src to dst. */
mpii_status mpii_image_merge(mpii_image *dst, const mpii_image *src);

/* Listing helpers. */
size_t mpii_listing_count(const mpii_entry *listing);
/* The type of name in the listing, or 0 when it is absent. */
int mpii_listing_find(const mpii_entry *listing, const char *name);
/* 1: name is a symbolic link; 0: it is not; -1: the listing lacks it. */
int mpii_listing_is_link(const mpii_entry *listing, const char *name);
/* The index-th name in the directory's order (not NUL-terminated: *len) and
 * type; MPII_ERR_INVALID past the end. */
mpii_status mpii_listing_at(const mpii_entry *listing, size_t index, const char **name,
                            size_t *len, mpii_dirent_type *type);

/* Serialises into a malloc'd buffer the caller frees. label may be NULL. */
mpii_status mpii_image_serialize(const mpii_image *image, uint64_t sequence, const char *label,
                                 uint8_t **out, size_t *out_len);
/* Parses and verifies a buffer (size, magic, version, checksum, every bound).
 * label may be NULL; it receives at most label_cap-1 bytes, NUL-terminated. */
mpii_status mpii_image_parse(const uint8_t *buf, size_t len, mpii_image **out,
                             uint64_t *sequence, char *label, size_t label_cap);

#ifdef __cplusplus
}
#endif
#endif
