/* elf.h — the $ORIGIN-relative dependencies of an ELF shared object.
 *
 * When an extension module is staged node-locally, the shared libraries it
 * finds through an $ORIGIN-relative RPATH/RUNPATH (numpy.libs/, scipy.libs/
 * in wheels) must be staged too, at the same relative place. This reader
 * takes the bytes of one ELF file (as already read for distribution) and
 * lists its DT_NEEDED names and the directories its $ORIGIN search-path
 * entries name, resolved against the file's original directory.
 *
 * Reads ELF64 and ELF32, little-endian only. Untrusted input is fine: every
 * offset, size and string is bounds-checked against the buffer, nothing is
 * read outside it, whatever the bytes.
 *
 * Limits (absurd files only; real ones are far below): at most
 * MPII_ELF_MAX_NEEDED DT_NEEDED entries, each shorter than PATH_MAX, and at
 * most MPII_ELF_MAX_SEARCH_BYTES bytes of RPATH/RUNPATH strings in total;
 * beyond them the file is reported as MPII_ERR_CORRUPT. */
#ifndef MPIIMPORT_ELF_H
#define MPIIMPORT_ELF_H

#include <stddef.h>
#include <stdint.h>

#include "mpiimport/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MPII_ELF_MAX_NEEDED 4096
#define MPII_ELF_MAX_SEARCH_BYTES 65536

typedef struct mpii_elf_deps {
    char **needed;        /* DT_NEEDED names, in order */
    size_t needed_count;
    char **origin_dirs;   /* RPATH/RUNPATH entries that use $ORIGIN or ${ORIGIN},
                           * with it replaced by origin_dir and the result
                           * normalised lexically ("." and ".." components
                           * resolved, duplicate slashes removed), in order,
                           * without duplicates */
    size_t origin_dir_count;
} mpii_elf_deps;

/* data/len: the whole file. origin_dir: absolute directory of the file.
 *
 * A file that is not ELF, or an ELF of a class/byte order/version we do not
 * read → MPII_ERR_INVALID (also for a NULL argument or a relative
 * origin_dir; MPII_ERR_TOOLONG for an origin_dir of PATH_MAX bytes or more).
 * An ELF whose headers/tables point outside the buffer or are inconsistent
 * (or exceed the limits above) → MPII_ERR_CORRUPT. An ELF without
 * PT_DYNAMIC → MPII_OK with empty lists. MPII_ERR_NOMEM when an allocation
 * fails.
 *
 * DT_RPATH and DT_RUNPATH entries are both listed (in dynamic-section
 * order), even though the loader ignores DT_RPATH when DT_RUNPATH is
 * present: staging one directory too many is harmless, one too few is not.
 * Entries without $ORIGIN are ignored, and so are entries that also use
 * $LIB or $PLATFORM (not resolvable here), entries that are not absolute
 * after substitution, and entries whose normalised form does not fit
 * PATH_MAX. As in ld.so, "$ORIGIN" followed by a letter, digit or '_' is
 * not the token.
 *
 * On any error *out is left empty (safe to free). Free with
 * mpii_elf_deps_free(). */
mpii_status mpii_elf_deps_read(const uint8_t *data, size_t len, const char *origin_dir,
                               mpii_elf_deps *out);

/* Frees everything *deps owns and empties it; NULL and empty are fine. */
void mpii_elf_deps_free(mpii_elf_deps *deps);

#ifdef __cplusplus
}
#endif
#endif
