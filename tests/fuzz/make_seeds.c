/* make_seeds.c — writes the fuzzers' seed corpora from real files, at build
 * time (the `fuzz_seeds` target), so no binary seed is kept in git.
 *
 *   make_seeds OUT_DIR PYTHON_LIB_DIR [ELF_FILE...]
 *
 * OUT_DIR/image/: images built with the core's own API from the standard
 * library in PYTHON_LIB_DIR (e.g. /usr/lib/python3.11): FILE entries with
 * bytes, stat-only and data-omitted, LISTINGs of real directories (types as
 * the finder records them, symlinks resolved), MISS and MISS|NOT_DIR, and
 * CODE entries holding the real marshalled code of the __pycache__ .pyc files; each
 * serialised with mpii_image_serialize at several sequence numbers (odd ones
 * turn on the entry-count fix-up, fuzz_common.h), plus one recorded list
 * written by mpii_image_write_file, as the hook saves it. Every seed is
 * parsed back before the program succeeds.
 *
 * OUT_DIR/elf/: byte copies of the ELF files named (missing ones are
 * skipped with a note; at least one must exist). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "mpiimport/image.h"

#define MAX_PATH 4096
#define MAX_NAMES 4096
#define SMALL_FILE 4096

static const char *out_dir;
static const char *py_dir;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "make_seeds: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void check(mpii_status st, const char *what)
{
    if (st != MPII_OK)
        die(what, mpii_strerror(st));
}

static void join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, MAX_PATH, "%s/%s", a, b);
    if (n < 0 || n >= MAX_PATH)
        die("path too long", a);
}

/* The whole file, malloc'd (*len bytes); NULL when it cannot be read. */
static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *nb = realloc(buf, cap);
            if (nb == NULL)
                die("out of memory", NULL);
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        die("cannot create", path);
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    if (fclose(f) != 0 || w != len)
        die("cannot write", path);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("mkdir", path);
}

/* ---- directory contents ---- */

typedef struct names {
    char *name[MAX_NAMES];
    mpii_dirent_type type[MAX_NAMES];
    size_t count;
} names;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directory's names, sorted, with their types (symlinks resolved). */
static int list_dir(const char *dir, names *out)
{
    out->count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && out->count < MAX_NAMES) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *copy = strdup(de->d_name);
        if (copy == NULL)
            die("out of memory", NULL);
        out->name[out->count++] = copy;
    }
    if (closedir(d) != 0)
        die("closedir", dir);
    qsort(out->name, out->count, sizeof out->name[0], name_cmp);
    for (size_t i = 0; i < out->count; i++) {
        char path[MAX_PATH];
        struct stat sb;
        join(path, dir, out->name[i]);
        if (stat(path, &sb) != 0)
            out->type[i] = MPII_DIRENT_OTHER; /* dangling symlink */
        else
            out->type[i] = S_ISREG(sb.st_mode) ? MPII_DIRENT_FILE
                           : S_ISDIR(sb.st_mode) ? MPII_DIRENT_DIR : MPII_DIRENT_OTHER;
    }
    return 0;
}

static void free_names(names *n)
{
    for (size_t i = 0; i < n->count; i++)
        free(n->name[i]);
    n->count = 0;
}

static void add_listing(mpii_image *img, const char *dir)
{
    static names n;
    if (list_dir(dir, &n) != 0)
        return;
    struct stat sb;
    int64_t mtime = stat(dir, &sb) == 0 ? (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec : 0;
    check(mpii_image_add_listing_at(img, dir, (const char *const *)n.name, n.type, n.count, mtime),
          "add listing");
    free_names(&n);
}

/* ---- the standard library's small modules ---- */

typedef struct module {
    char source[MAX_PATH];  /* PYTHON_LIB_DIR/x.py */
    char cache[MAX_PATH];   /* PYTHON_LIB_DIR/__pycache__/x.<tag>.pyc, or "" */
    struct stat sb;
} module;

#define MODULES 6
static module modules[MODULES];
static size_t module_count;

/* The first few regular *.py files of at most SMALL_FILE bytes, by name,
 * and their bytecode caches. */
static void find_modules(void)
{
    static names top, cache;
    if (list_dir(py_dir, &top) != 0)
        return;
    char cache_dir[MAX_PATH];
    join(cache_dir, py_dir, "__pycache__");
    if (list_dir(cache_dir, &cache) != 0)
        cache.count = 0;
    for (size_t i = 0; i < top.count && module_count < MODULES; i++) {
        size_t nl = strlen(top.name[i]);
        if (nl < 4 || strcmp(top.name[i] + nl - 3, ".py") != 0 || top.type[i] != MPII_DIRENT_FILE)
            continue;
        module *m = &modules[module_count];
        join(m->source, py_dir, top.name[i]);
        if (stat(m->source, &m->sb) != 0 || m->sb.st_size > SMALL_FILE)
            continue;
        m->cache[0] = '\0';
        for (size_t k = 0; k < cache.count; k++) { /* stem.<tag>.pyc, not an opt- variant */
            const char *c = cache.name[k];
            size_t cl = strlen(c);
            if (strncmp(c, top.name[i], nl - 2) == 0 && cl > 4 && strcmp(c + cl - 4, ".pyc") == 0 &&
                strstr(c, ".opt-") == NULL) {
                join(m->cache, cache_dir, c);
                break;
            }
        }
        module_count++;
    }
    free_names(&top);
    free_names(&cache);
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

static void add_source(mpii_image *img, const module *m, uint32_t flags)
{
    size_t len = 0;
    unsigned char *bytes = NULL;
    if (!(flags & (MPII_FILE_STAT_ONLY | MPII_FILE_DATA_OMITTED))) {
        bytes = read_all(m->source, &len);
        if (bytes == NULL)
            die("cannot read", m->source);
    }
    check(mpii_image_add_file(img, m->source, bytes, len, mtime_ns(&m->sb), (uint64_t)m->sb.st_size, flags),
          "add file");
    free(bytes);
}

/* The marshalled code of the module's .pyc (after its 16-byte header). */
static void add_code(mpii_image *img, const module *m)
{
    if (m->cache[0] == '\0')
        return;
    size_t len = 0;
    unsigned char *pyc = read_all(m->cache, &len);
    if (pyc == NULL || len <= 16) {
        free(pyc);
        return;
    }
    check(mpii_image_add_code(img, m->source, pyc + 16, len - 16, mtime_ns(&m->sb), (uint64_t)m->sb.st_size),
          "add code");
    free(pyc);
}

static void add_misses(mpii_image *img)
{
    char path[MAX_PATH];
    join(path, py_dir, "no_such_module.py");
    check(mpii_image_add_miss(img, path, 0), "add miss");
    join(path, py_dir, "no_such_package");
    check(mpii_image_add_miss(img, path, 0), "add miss");
    if (module_count > 0) /* a file where a directory was wanted */
        check(mpii_image_add_miss(img, modules[0].source, MPII_MISS_NOT_DIR), "add miss");
}

/* ---- writing and checking seeds ---- */

static void verify(const char *path, size_t want_count)
{
    mpii_image *img = NULL;
    check(mpii_image_read_file(path, &img, NULL, 0), path);
    if (mpii_image_count(img) != want_count)
        die("seed reads back with another entry count", path);
    mpii_image_destroy(img);
}

static void emit(const mpii_image *img, uint64_t seq, const char *label, const char *name)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    check(mpii_image_serialize(img, seq, label, &buf, &len), "serialise");
    char path[MAX_PATH], dir[MAX_PATH];
    join(dir, out_dir, "image");
    join(path, dir, name);
    write_all(path, buf, len);
    free(buf);
    verify(path, mpii_image_count(img));
    printf("make_seeds: %s (%zu entries, %zu bytes)\n", path, mpii_image_count(img), len);
}

static void image_seeds(void)
{
    char path[MAX_PATH];
    mpii_image *img = NULL;
    find_modules();
    if (module_count == 0)
        fprintf(stderr, "make_seeds: note: no small modules in %s; image seeds are thin\n", py_dir);

    /* Nothing but a label. */
    check(mpii_image_create(&img), "create");
    emit(img, 0, "", "empty.img");

    /* One entry of each kind. */
    if (module_count > 0) {
        add_source(img, &modules[0], 0);
        add_code(img, &modules[0]);
    }
    join(path, py_dir, "json");
    add_listing(img, path);
    add_misses(img);
    emit(img, 1, "kinds", "kinds.img");
    emit(img, 6, "kinds", "kinds-even.img");
    mpii_image_clear(img);

    /* The top-level listing, a few modules with bytes and code, stat-only files. */
    add_listing(img, py_dir);
    for (size_t i = 0; i < module_count; i++) {
        add_source(img, &modules[i], i % 3 == 2 ? MPII_FILE_STAT_ONLY : 0);
        add_code(img, &modules[i]);
    }
    add_misses(img);
    emit(img, 2, py_dir, "stdlib.img");
    emit(img, 3, py_dir, "stdlib-odd.img");
    mpii_image_clear(img);

    /* A recorded list, written as the hook saves one: stat facts, data omitted. */
    add_listing(img, py_dir);
    join(path, py_dir, "__pycache__");
    add_listing(img, path);
    for (size_t i = 0; i < module_count; i++)
        add_source(img, &modules[i], MPII_FILE_DATA_OMITTED);
    add_misses(img);
    char dir[MAX_PATH];
    join(dir, out_dir, "image");
    join(path, dir, "recorded-list.img");
    check(mpii_image_write_file(img, path, "recorded list"), "write recorded list");
    verify(path, mpii_image_count(img));
    printf("make_seeds: %s (%zu entries)\n", path, mpii_image_count(img));
    mpii_image_clear(img);

    /* A label at (past) its maximum, which the writer truncates. */
    char label[MPII_IMAGE_LABEL_MAX + 64];
    for (size_t i = 0; i + 1 < sizeof label; i++)
        label[i] = (char)('a' + i % 26);
    label[sizeof label - 1] = '\0';
    join(path, py_dir, "no_such_module.py");
    check(mpii_image_add_miss(img, path, 0), "add miss");
    emit(img, 5, label, "long-label.img");
    mpii_image_destroy(img);
}

static int elf_seeds(int count, char **files)
{
    char dir[MAX_PATH];
    join(dir, out_dir, "elf");
    int copied = 0;
    for (int i = 0; i < count; i++) {
        size_t len = 0;
        unsigned char *bytes = read_all(files[i], &len);
        if (bytes == NULL || len < 4 || memcmp(bytes, "\177ELF", 4) != 0) {
            fprintf(stderr, "make_seeds: note: %s skipped (missing or not ELF)\n", files[i]);
            free(bytes);
            continue;
        }
        const char *base = strrchr(files[i], '/');
        base = base ? base + 1 : files[i];
        char name[MAX_PATH], path[MAX_PATH];
        int n = snprintf(name, sizeof name, "%02d-%s", i, base);
        if (n < 0 || (size_t)n >= sizeof name)
            die("name too long", base);
        join(path, dir, name);
        write_all(path, bytes, len);
        free(bytes);
        printf("make_seeds: %s (%zu bytes)\n", path, len);
        copied++;
    }
    return copied;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: make_seeds OUT_DIR PYTHON_LIB_DIR [ELF_FILE...]\n");
        return 2;
    }
    out_dir = argv[1];
    py_dir = argv[2];
    char dir[MAX_PATH];
    make_dir(out_dir);
    join(dir, out_dir, "image");
    make_dir(dir);
    join(dir, out_dir, "elf");
    make_dir(dir);
    image_seeds();
    if (elf_seeds(argc - 3, argv + 3) == 0)
        die("no ELF seed could be copied", NULL);
    return 0;
}
