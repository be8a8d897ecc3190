/* finder.h — CPython's FileFinder, answered from directory listings.
 *
 * mpii_find_in_dir() makes the decision importlib.machinery.FileFinder.find_spec
 * makes for one path entry, in the same order:
 *   1. a directory named like the module holding __init__ + a suffix
 *      (suffixes in loader order) is a package;
 *   2. otherwise name + suffix, for each suffix in loader order, is a module;
 *   3. otherwise a directory of that name is a namespace portion;
 *   4. otherwise nothing.
 * Every "is it a file / a directory" question is answered from the listing of
 * the directory that holds the name (symlinks already resolved in the
 * listing), so a lookup costs no stat at all. Listings come from a callback:
 * the root reads the file system, other ranks answer from what they received
 * and report MPII_ERR_GAP when they have not received it yet. */
#ifndef MPIIMPORT_FINDER_H
#define MPIIMPORT_FINDER_H

#include <stddef.h>

#include "mpiimport/image.h"
#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MPII_PATH_MAX 4096
#define MPII_MAX_SUFFIXES 16
#define MPII_SUFFIX_MAX 64

typedef enum mpii_loader_kind {
    MPII_LOADER_EXTENSION = 1,  /* ExtensionFileLoader */
    MPII_LOADER_SOURCE = 2,     /* SourceFileLoader */
    MPII_LOADER_BYTECODE = 3    /* SourcelessFileLoader */
} mpii_loader_kind;

/* The suffixes in importlib's loader order (_get_supported_file_loaders()). */
typedef struct mpii_suffix_table {
    size_t count;
    char suffix[MPII_MAX_SUFFIXES][MPII_SUFFIX_MAX];
    mpii_loader_kind loader[MPII_MAX_SUFFIXES];
} mpii_suffix_table;

mpii_status mpii_suffix_table_add(mpii_suffix_table *table, const char *suffix,
                                  mpii_loader_kind loader);

typedef enum mpii_find_kind {
    MPII_FIND_NONE = 0,
    MPII_FIND_MODULE = 1,
    MPII_FIND_PACKAGE = 2,
    MPII_FIND_NAMESPACE = 3
} mpii_find_kind;

typedef struct mpii_find_result {
    mpii_find_kind kind;
    mpii_loader_kind loader;         /* MODULE and PACKAGE */
    char origin[MPII_PATH_MAX];      /* MODULE and PACKAGE: the file */
    char location[MPII_PATH_MAX];    /* PACKAGE and NAMESPACE: the package directory */
} mpii_find_result;

/* Sets *listing to the LISTING entry of dir, or to NULL when dir is not a
 * directory; *miss_flags gets the MISS flags then. Returns MPII_ERR_GAP when
 * the listing is not known (yet). */
typedef mpii_status (*mpii_listing_fn)(void *arg, const char *dir, const mpii_entry **listing,
                                       unsigned *miss_flags);

/* dir: an absolute directory path (a path entry); name: the last component
 * of the module name (no dots). */
mpii_status mpii_find_in_dir(const mpii_suffix_table *suffixes, mpii_listing_fn listing_fn,
                             void *arg, const char *dir, const char *name,
                             mpii_find_result *result);

/* Joins dir and name with one '/', as importlib's _path_join does. */
mpii_status mpii_path_join(char *out, size_t cap, const char *dir, const char *name);

#ifdef __cplusplus
}
#endif
#endif
