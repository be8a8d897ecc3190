/* finder.c — FileFinder.find_spec for one directory, answered from listings.
 * Mirrors importlib/_bootstrap_external.py (CPython 3.11) FileFinder.find_spec:
 * the package check (_path_isfile of each __init__ + suffix), the module check
 * (name + suffix present in the directory's cache and a regular file), then a
 * namespace portion (_path_isdir), in that order. */
#include <stdio.h>
#include <string.h>

#include "mpiimport/finder.h"

mpii_status mpii_suffix_table_add(mpii_suffix_table *table, const char *suffix,
                                  mpii_loader_kind loader)
{
    if (table == NULL || suffix == NULL || suffix[0] == '\0' || loader < MPII_LOADER_EXTENSION ||
        loader > MPII_LOADER_BYTECODE)
        return MPII_ERR_INVALID;
    if (table->count >= MPII_MAX_SUFFIXES)
        return MPII_ERR_TOOLONG;
    int n = snprintf(table->suffix[table->count], MPII_SUFFIX_MAX, "%s", suffix);
    if (n < 0 || n >= MPII_SUFFIX_MAX)
        return MPII_ERR_TOOLONG;
    table->loader[table->count] = loader;
    table->count++;
    return MPII_OK;
}

mpii_status mpii_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    if (out == NULL || dir == NULL || name == NULL || cap == 0)
        return MPII_ERR_INVALID;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    int n = (dl == 1 && dir[0] == '/') ? snprintf(out, cap, "/%s", name)
                                       : snprintf(out, cap, "%.*s/%s", (int)dl, dir, name);
    if (n < 0 || (size_t)n >= cap)
        return MPII_ERR_TOOLONG;
    return MPII_OK;
}

/* The type of `name` inside `dir`, from dir's listing; 0 when absent or when
 * dir is not a directory. */
static mpii_status type_in(mpii_listing_fn fn, void *arg, const char *dir, const char *name,
                           int *type)
{
    const mpii_entry *listing = NULL;
    unsigned miss_flags = 0;
    mpii_status st = fn(arg, dir, &listing, &miss_flags);
    if (st != MPII_OK)
        return st;
    *type = listing ? mpii_listing_find(listing, name) : 0;
    return MPII_OK;
}

mpii_status mpii_find_in_dir(const mpii_suffix_table *suffixes, mpii_listing_fn fn, void *arg,
                             const char *dir, const char *name, mpii_find_result *result)
{
    if (suffixes == NULL || fn == NULL || dir == NULL || name == NULL || result == NULL ||
        name[0] == '\0' || strchr(name, '.') != NULL || strchr(name, '/') != NULL)
        return MPII_ERR_INVALID;
    result->kind = MPII_FIND_NONE;
    result->origin[0] = result->location[0] = '\0';

    const mpii_entry *listing = NULL;
    unsigned miss_flags = 0;
    mpii_status st = fn(arg, dir, &listing, &miss_flags);
    if (st != MPII_OK)
        return st;
    if (listing == NULL)
        return MPII_OK; /* not a directory: FileFinder's cache is empty */

    char base[MPII_PATH_MAX], cand[MPII_PATH_MAX], file[MPII_SUFFIX_MAX + 256];
    int is_namespace = 0;
    int base_type = mpii_listing_find(listing, name);
    if (base_type != 0) {
        if ((st = mpii_path_join(base, sizeof base, dir, name)) != MPII_OK)
            return st;
        for (size_t i = 0; i < suffixes->count; i++) {
            int n = snprintf(file, sizeof file, "__init__%s", suffixes->suffix[i]);
            if (n < 0 || (size_t)n >= sizeof file)
                return MPII_ERR_TOOLONG;
            int t = 0;
            if (base_type == MPII_DIRENT_DIR && (st = type_in(fn, arg, base, file, &t)) != MPII_OK)
                return st;
            if (t == MPII_DIRENT_FILE) {
                if ((st = mpii_path_join(result->origin, sizeof result->origin, base, file)) != MPII_OK)
                    return st;
                snprintf(result->location, sizeof result->location, "%s", base);
                result->kind = MPII_FIND_PACKAGE;
                result->loader = suffixes->loader[i];
                return MPII_OK;
            }
        }
        is_namespace = base_type == MPII_DIRENT_DIR;
    }
    for (size_t i = 0; i < suffixes->count; i++) {
        int n = snprintf(file, sizeof file, "%s%s", name, suffixes->suffix[i]);
        if (n < 0 || (size_t)n >= sizeof file)
            return MPII_ERR_TOOLONG;
        if (mpii_listing_find(listing, file) == MPII_DIRENT_FILE) {
            if ((st = mpii_path_join(cand, sizeof cand, dir, file)) != MPII_OK)
                return st;
            memcpy(result->origin, cand, sizeof cand);
            result->kind = MPII_FIND_MODULE;
            result->loader = suffixes->loader[i];
            return MPII_OK;
        }
    }
    if (is_namespace) {
        memcpy(result->location, base, sizeof base);
        result->kind = MPII_FIND_NAMESPACE;
    }
    return MPII_OK;
}
